"""One JSON shape for every error: {"error": {"code", "message", "details"}}."""

import logging

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db import OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

from memories.providers.embeddings import EmbeddingError
from memories.vectorstores import VectorStoreError

logger = logging.getLogger(__name__)

_CODES = {
    exceptions.ParseError: "malformed_json",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.Throttled: "rate_limited",
}


def error_body(code: str, message: str, details: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def only_reads(request) -> JsonResponse | None:
    """405 in the error shape unless the request is a GET or HEAD (the probes
    and /metrics, answered outside DRF)."""
    if request.method in ("GET", "HEAD"):
        return None
    response = JsonResponse(
        error_body("method_not_allowed", f"{request.method} is not allowed here."),
        status=status.HTTP_405_METHOD_NOT_ALLOWED,
    )
    response["Allow"] = "GET, HEAD"
    return response


def _field_errors(detail) -> dict:
    """DRF's nested ValidationError detail as {field: [{code, message}]}."""
    if isinstance(detail, dict):
        return {str(key): _field_errors(value) for key, value in detail.items()}
    if isinstance(detail, list):
        if all(isinstance(item, exceptions.ErrorDetail) for item in detail):
            return [{"code": item.code, "message": str(item)} for item in detail]
        return [_field_errors(item) for item in detail]
    return [{"code": getattr(detail, "code", "invalid"), "message": str(detail)}]


def api_exception_handler(exc, context):
    """DRF exception handler producing the error shape; never lets a 500 escape
    as HTML."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    if isinstance(exc, exceptions.ValidationError):
        fields = _field_errors(exc.detail)
        if isinstance(fields, list):
            fields = {"non_field_errors": fields}
        first = next(iter(fields.items()), None)
        summary = "The request is not valid."
        if (
            first
            and isinstance(first[1], list)
            and first[1]
            and "message" in first[1][0]
        ):
            summary = f"{first[0]}: {first[1][0]['message']}"
        return Response(
            error_body("invalid_input", summary, {"fields": fields}),
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, exceptions.AuthenticationFailed):
        code = getattr(exc.detail, "code", None) or "authentication_failed"
        response = Response(error_body(code, str(exc.detail)), status=exc.status_code)
        return _with_auth_header(response, exc, context)
    if isinstance(exc, exceptions.Throttled):
        response = Response(
            error_body(
                "rate_limited",
                "Too many requests for this tenant; retry later.",
                {"retry_after_seconds": exc.wait},
            ),
            status=exc.status_code,
        )
        if exc.wait is not None:
            response["Retry-After"] = str(int(exc.wait) + 1)
        return response
    if isinstance(exc, exceptions.APIException):
        code = next(
            (name for cls, name in _CODES.items() if isinstance(exc, cls)),
            getattr(exc, "default_code", "error"),
        )
        response = Response(error_body(code, str(exc.detail)), status=exc.status_code)
        if isinstance(exc, exceptions.NotAuthenticated):
            return _with_auth_header(response, exc, context)
        return response
    if isinstance(exc, RequestDataTooBig):
        return Response(
            error_body("request_too_large", "The request body is too large."),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, EmbeddingError | VectorStoreError):
        logger.exception("Provider failure")
        return Response(
            error_body(
                "provider_unavailable",
                "A memory provider is unavailable; nothing was stored. Retry later.",
            ),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    if isinstance(exc, OperationalError) and "locked" in str(exc):
        # SQLite's busy timeout ran out behind another writer: nothing of this
        # request was written (its transaction rolled back), and a retry works.
        logger.warning("Database busy: %s", exc)
        response = Response(
            error_body(
                "database_busy",
                "The database is busy with other writes; nothing was stored. "
                "Retry shortly.",
            ),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
        response["Retry-After"] = "1"
        return response
    logger.exception("Unhandled error in API view", exc_info=exc)
    return Response(
        error_body("server_error", "An unexpected error occurred."),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def _with_auth_header(response: Response, exc, context) -> Response:
    request = context.get("request")
    view = context.get("view")
    if request is not None and view is not None:
        header = view.get_authenticate_header(request)
        if header:
            response["WWW-Authenticate"] = header
    return response


def not_found(request, exception=None):
    return JsonResponse(
        error_body("not_found", "No such endpoint."), status=status.HTTP_404_NOT_FOUND
    )


def server_error(request):
    return JsonResponse(
        error_body("server_error", "An unexpected error occurred."),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def bad_request(request, exception=None):
    return JsonResponse(
        error_body("bad_request", "The request could not be understood."),
        status=status.HTTP_400_BAD_REQUEST,
    )
