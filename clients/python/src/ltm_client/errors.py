"""One exception class per error code of the server, under one base class.

Every error the server answers is JSON {"error": {"code", "message",
"details"}}; the class is chosen by the code, and carries it with the message,
the details and the HTTP status. A code this version does not know is raised
as the base class for its status group, or as LTMError.
"""

from __future__ import annotations

from typing import Any, ClassVar


class LTMError(Exception):
    """An error answer of the service (or, for LTMTransportError, no answer)."""

    code: ClassVar[str] = "error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code  # an instance's own code, for an unknown one
        self.details = details or {}
        self.status = status
        self.retry_after = retry_after

    def __str__(self) -> str:
        status = f" (HTTP {self.status})" if self.status is not None else ""
        return f"{self.code}{status}: {self.message}"


class LTMTransportError(LTMError):
    """The service could not be reached or did not answer in time."""

    code = "transport_error"


class LTMTimeout(LTMTransportError):
    code = "timeout"


# Groups, so that a caller can catch every code of a kind at once.
class BadRequestError(LTMError):
    """400: the request was refused as it is; do not send it again unchanged."""


class AuthenticationError(LTMError):
    """401: no token, or one that is not valid (any more)."""


class ServiceUnavailable(LTMError):
    """503: try again later; nothing half-written."""


# One class per code.
class InvalidInput(BadRequestError):
    """A field missing, empty, of the wrong type or too long: details["fields"]."""

    code = "invalid_input"


class MalformedJSON(BadRequestError):
    code = "malformed_json"


class BadRequest(BadRequestError):
    code = "bad_request"


class NotAuthenticated(AuthenticationError):
    code = "not_authenticated"


class InvalidAuthorizationHeader(AuthenticationError):
    code = "invalid_authorization_header"


class InvalidToken(AuthenticationError):
    code = "invalid_token"


class TokenRevoked(AuthenticationError):
    code = "token_revoked"


class TenantInactive(AuthenticationError):
    code = "tenant_inactive"


class AuthenticationFailed(AuthenticationError):
    code = "authentication_failed"


class PermissionDenied(LTMError):
    code = "permission_denied"


class NotFound(LTMError):
    code = "not_found"


class MethodNotAllowed(LTMError):
    code = "method_not_allowed"


class NotAcceptable(LTMError):
    code = "not_acceptable"


class LengthRequired(LTMError):
    code = "length_required"


class RequestTooLarge(LTMError):
    code = "request_too_large"


class UnsupportedMediaType(LTMError):
    code = "unsupported_media_type"


class RateLimited(LTMError):
    """429: over the tenant's rate limit; retry_after says when to retry."""

    code = "rate_limited"


class ProviderUnavailable(ServiceUnavailable):
    code = "provider_unavailable"


class DatabaseBusy(ServiceUnavailable):
    code = "database_busy"


class ImportIncomplete(ServiceUnavailable):
    """The import's time ran out: details has imported, remaining, resumeFrom
    and messageIds. import_messages resends by itself."""

    code = "import_incomplete"


class ErasureIncomplete(ServiceUnavailable):
    """Data of the user remained after an erasure: details["remaining"]."""

    code = "erasure_incomplete"


class ModelRejected(BadRequestError):
    """Chat completions: the model refused the conversation as sent."""

    code = "model_rejected"


class ModelError(LTMError):
    """Chat completions (502): the model failed to answer."""

    code = "model_error"


class ModelUnavailable(ServiceUnavailable):
    """Chat completions: the model could not be reached or answer in time."""

    code = "model_unavailable"


class ServerError(LTMError):
    code = "server_error"


ERRORS_BY_CODE: dict[str, type[LTMError]] = {
    cls.code: cls
    for cls in (
        InvalidInput,
        MalformedJSON,
        BadRequest,
        NotAuthenticated,
        InvalidAuthorizationHeader,
        InvalidToken,
        TokenRevoked,
        TenantInactive,
        AuthenticationFailed,
        PermissionDenied,
        NotFound,
        MethodNotAllowed,
        NotAcceptable,
        LengthRequired,
        RequestTooLarge,
        UnsupportedMediaType,
        RateLimited,
        ProviderUnavailable,
        DatabaseBusy,
        ImportIncomplete,
        ErasureIncomplete,
        ModelRejected,
        ModelError,
        ModelUnavailable,
        ServerError,
    )
}
_BY_STATUS: dict[int, type[LTMError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    503: ServiceUnavailable,
}


def error_class(code: str, status: int) -> type[LTMError]:
    return ERRORS_BY_CODE.get(code) or _BY_STATUS.get(status) or LTMError
