"""Request bodies sent in chunks (Transfer-Encoding: chunked, no Content-Length).

gunicorn decodes such a body and says so (`wsgi.input_terminated`), but Django
reads only Content-Length bytes, so the body read as empty and the answer was
"userId: This field is required". The body is read here, within the largest
body any endpoint takes, and handed on with its length; each endpoint's own
limit then applies as to any other body. A server that does not decode chunks
gets 411 in the error shape.
"""

import io
import json

from django.conf import settings


def _error(start_response, status: str, code: str, message: str):
    body = json.dumps({"error": {"code": code, "message": message, "details": {}}})
    start_response(
        status,
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body.encode()]


class ChunkedBodies:
    def __init__(self, application):
        self.application = application

    def __call__(self, environ, start_response):
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if chunked and not environ.get("CONTENT_LENGTH"):
            if not environ.get("wsgi.input_terminated"):
                return _error(
                    start_response,
                    "411 Length Required",
                    "length_required",
                    "This server cannot read a chunked body: send Content-Length.",
                )
            limit = max(
                settings.LTM_MAX_REQUEST_BYTES,
                settings.LTM_MAX_IMPORT_BYTES,
                settings.LTM_MAX_CHAT_BYTES,
            )
            body = environ["wsgi.input"].read(limit + 1)
            if len(body) > limit:
                return _error(
                    start_response,
                    "413 Request Entity Too Large",
                    "request_too_large",
                    "The request body is too large.",
                )
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return self.application(environ, start_response)
