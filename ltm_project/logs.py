"""A request id in every log line, and logs as JSON lines by setting.

The id is the client's X-Request-ID when it sends a sane one (a proxy's or a
caller's trace), else a new one; it is echoed in the response's X-Request-ID,
so a client's report and the service's logs meet.
"""

import json
import logging
import re
import uuid
from contextvars import ContextVar

from django.core.signals import request_finished, request_started
from django.http import HttpRequest, HttpResponse

REQUEST_ID_HEADER = "X-Request-ID"
# Letters, digits and . _ - : what proxies and tracing ids use, and nothing
# that could forge a log line.
_SANE_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
NO_REQUEST = "-"

_request_id: ContextVar[str] = ContextVar("ltm_request_id", default=NO_REQUEST)


def current_request_id() -> str:
    return _request_id.get()


# Set when the handler starts and cleared when the response is closed, not in
# the middleware: Django logs a 4xx or 5xx answer after the middleware returns.
def _started(sender, environ=None, **kwargs) -> None:
    given = (environ or {}).get("HTTP_X_REQUEST_ID", "")
    _request_id.set(given if _SANE_ID.match(given) else uuid.uuid4().hex)


def _finished(sender, **kwargs) -> None:
    _request_id.set(NO_REQUEST)


request_started.connect(_started, dispatch_uid="ltm_request_id_started")
request_finished.connect(_finished, dispatch_uid="ltm_request_id_finished")


def request_id_middleware(get_response):
    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        response[REQUEST_ID_HEADER] = _request_id.get()
        return response

    return middleware


class RequestIdFilter(logging.Filter):
    """Puts the current request's id on every record (`-` outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, request id, message, and
    the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "requestId": getattr(record, "request_id", NO_REQUEST),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)
