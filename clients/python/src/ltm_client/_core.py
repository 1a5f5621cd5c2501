"""What both clients share: configuration, requests, answers, retries, and
the operations themselves, written once.

An operation is a generator: it yields the requests it needs (a `Request`),
receives each one's `httpx.Response`, and returns its typed result. The sync
and async clients only differ in how they send a request and wait
(`_sync.py`, `_async.py`); what to send, how to read the answer, when to retry,
how to split an import and how to resume one are here.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from ltm_client import models
from ltm_client.errors import ImportIncomplete, LTMError, error_class

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
# The service's documented defaults (LTM_IMPORT_MAX_MESSAGES,
# LTM_MAX_IMPORT_BYTES); a service configured otherwise needs them passed.
IMPORT_MAX_MESSAGES = 500
IMPORT_MAX_BYTES = 8 * 1024 * 1024
# Generated clientMessageIds start with this.
GENERATED_ID_PREFIX = "sdk-"

T = TypeVar("T")
Operation = Generator["Request", httpx.Response, T]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    params: Mapping[str, Any] | None = None
    body: bytes | None = None
    # Retried by the transport on 429 and 503 (all of the service's requests
    # are safe to send again: imports skip what they stored, erasure is
    # idempotent); an import's import_incomplete is the operation's to handle.
    stream: bool = False


@dataclass(frozen=True)
class RetryPolicy:
    """Retries on 429 and 503: exponential backoff with jitter, or the
    server's Retry-After when it says more; bounded in attempts and time."""

    max_attempts: int = 5
    backoff: float = 0.5  # seconds before the first retry, doubled each time
    max_backoff: float = 30.0
    max_total: float = 120.0  # seconds spent waiting, at most, per request
    statuses: frozenset[int] = frozenset({429, 503})

    def delay(self, attempt: int, response: httpx.Response) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None: no retry."""
        if response.status_code not in self.statuses:
            return None
        if attempt >= self.max_attempts:
            return None
        if _error_code(response) == ImportIncomplete.code:
            return None
        backoff = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        backoff *= 0.5 + random.random() / 2  # noqa: S311 - jitter, not secrets
        told = retry_after(response)
        return max(backoff, told) if told is not None else backoff


@dataclass
class Config:
    api_key: str
    base_url: str
    timeout: httpx.Timeout
    retry: RetryPolicy
    import_max_messages: int = IMPORT_MAX_MESSAGES
    import_max_bytes: int = IMPORT_MAX_BYTES
    headers: dict[str, str] = field(default_factory=dict)

    def request_headers(self, request: Request) -> dict[str, str]:
        # Sent with each request, so that an httpx client of the caller's own
        # (http_client=) needs no setup.
        if request.body is None:
            return self.headers
        return {**self.headers, "Content-Type": "application/json"}


def make_config(
    *,
    api_key: str | None,
    base_url: str | None,
    timeout: float | httpx.Timeout,
    retry: RetryPolicy | None,
    import_max_messages: int,
    import_max_bytes: int,
) -> Config:
    api_key = api_key or os.environ.get("LTM_API_KEY")
    if not api_key:
        raise ValueError("No API key: pass api_key= or set LTM_API_KEY.")
    base_url = base_url or os.environ.get("LTM_BASE_URL") or DEFAULT_BASE_URL
    return Config(
        api_key=api_key,
        base_url=base_url.rstrip("/"),
        timeout=timeout
        if isinstance(timeout, httpx.Timeout)
        else httpx.Timeout(timeout),
        retry=retry or RetryPolicy(),
        import_max_messages=import_max_messages,
        import_max_bytes=import_max_bytes,
        headers={
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
            "User-Agent": "ltm-client-python/0.1.0",
        },
    )


# --- answers -------------------------------------------------------------------
def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - datetime.now(moment.tzinfo)).total_seconds())


def _error_code(response: httpx.Response) -> str | None:
    try:
        return response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def raise_for_error(response: httpx.Response) -> None:
    """The answer's error as its exception class; nothing for a success."""
    if response.is_success:
        return
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
        details = error.get("details") or {}
    except (ValueError, KeyError, TypeError):
        code, message, details = "http_error", response.reason_phrase, {}
    raise error_class(code, response.status_code)(
        message,
        code=code,
        details=details,
        status=response.status_code,
        retry_after=retry_after(response),
    )


def parse(model: type[BaseModel], response: httpx.Response) -> Any:
    raise_for_error(response)
    return model.model_validate_json(response.content)


def encode(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def user_path(user_id: str) -> str:
    # Every character of the id is data, "/" included.
    return quote(user_id, safe="")


# --- operations ----------------------------------------------------------------
def message(user_id: str, text: str) -> Operation[models.MessageResult]:
    response = yield Request(
        "POST", "/api/v1/message", body=encode({"userId": user_id, "message": text})
    )
    return parse(models.MessageResult, response)


def forget(user_id: str, text: str) -> Operation[models.ForgetResult]:
    response = yield Request(
        "POST", "/api/v1/forget", body=encode({"userId": user_id, "message": text})
    )
    return parse(models.ForgetResult, response)


def search(
    user_id: str,
    query: str,
    *,
    top_k: int | None,
    start: datetime | str | None,
    end: datetime | str | None,
    speaker: str | None,
    slot: str | None,
    kind: str | None,
    role: str | None,
) -> Operation[models.SearchResult]:
    body: dict[str, Any] = {"userId": user_id, "query": query}
    if top_k is not None:
        body["topK"] = top_k
    time_range = {
        name: _time(value)
        for name, value in (("start", start), ("end", end))
        if value is not None
    }
    if time_range:
        body["timeRange"] = time_range
    filters = {
        name: value
        for name, value in (
            ("speaker", speaker),
            ("slot", slot),
            ("kind", kind),
            ("role", role),
        )
        if value is not None
    }
    if filters:
        body["filters"] = filters
    response = yield Request("POST", "/api/v1/memories/search", body=encode(body))
    return parse(models.SearchResult, response)


def memory_page(
    user_id: str,
    *,
    kind: str | None,
    status: str | None,
    limit: int | None,
    cursor: str | None,
) -> Operation[models.MemoryPage]:
    params = _params(userId=user_id, kind=kind, status=status, limit=limit)
    if cursor:
        params["cursor"] = cursor
    response = yield Request("GET", "/api/v1/memories", params=params)
    return parse(models.MemoryPage, response)


def get_memory(memory_id: str) -> Operation[models.MemoryDetail]:
    response = yield Request("GET", f"/api/v1/memories/{quote(memory_id, safe='')}")
    return parse(models.MemoryDetail, response)


def delete_memory(memory_id: str) -> Operation[None]:
    response = yield Request("DELETE", f"/api/v1/memories/{quote(memory_id, safe='')}")
    raise_for_error(response)


def user_page(
    *, limit: int | None, cursor: str | None
) -> Operation[models.EndUserPage]:
    params = _params(limit=limit)
    if cursor:
        params["cursor"] = cursor
    response = yield Request("GET", "/api/v1/users", params=params)
    return parse(models.EndUserPage, response)


def export_user(user_id: str) -> Operation[models.UserExport]:
    response = yield Request("GET", f"/api/v1/users/{user_path(user_id)}/export")
    return parse(models.UserExport, response)


def export_user_request(user_id: str) -> Request:
    """The streamed export's request (the clients write its bytes as they come)."""
    return Request("GET", f"/api/v1/users/{user_path(user_id)}/export", stream=True)


def erase_user(user_id: str) -> Operation[models.UserErasure]:
    response = yield Request("DELETE", f"/api/v1/users/{user_path(user_id)}")
    return parse(models.UserErasure, response)


def _params(**values: Any) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}


def _time(value: datetime | str) -> str:
    return value.isoformat() if isinstance(value, datetime) else value


# --- import --------------------------------------------------------------------
def generated_client_message_id(message: dict[str, Any]) -> str:
    """A clientMessageId from what the message is: the same message (time,
    role, speaker, text) always gets the same id, so sending it again, in this
    import or a later one, stores it once."""
    digest = hashlib.sha256(
        encode(
            [message["sentAt"], message["role"], message["speaker"], message["text"]]
        )
    ).hexdigest()
    return f"{GENERATED_ID_PREFIX}{digest[:40]}"


def _import_body(
    messages: Iterable[models.ImportMessage | Mapping[str, Any]],
    *,
    generate_ids: bool,
) -> list[dict[str, Any]]:
    bodies = []
    for item in messages:
        message = (
            item
            if isinstance(item, models.ImportMessage)
            else models.ImportMessage.model_validate(item)
        )
        body = {
            "text": message.text,
            "sentAt": _time(message.sent_at),
            "role": message.role,
            "speaker": message.speaker,
            "clientMessageId": message.client_message_id,
        }
        if generate_ids and not body["clientMessageId"]:
            body["clientMessageId"] = generated_client_message_id(body)
        bodies.append(body)
    return bodies


def import_batches(
    user_id: str, messages: list[dict[str, Any]], *, max_messages: int, max_bytes: int
) -> list[list[dict[str, Any]]]:
    """The messages in order, in batches of at most max_messages whose request
    body is at most max_bytes (a message alone over it gets a batch of its own,
    which the service refuses with request_too_large)."""
    # {"userId":...,"messages":[ ... ]}: the bytes around the messages.
    frame = len(encode({"userId": user_id, "messages": []}))
    batches: list[list[dict[str, Any]]] = []
    batch: list[dict[str, Any]] = []
    size = frame
    for message in messages:
        length = len(encode(message)) + (1 if batch else 0)  # and its comma
        if batch and (len(batch) >= max_messages or size + length > max_bytes):
            batches.append(batch)
            batch, size = [], frame
            length -= 1
        batch.append(message)
        size += length
    if batch:
        batches.append(batch)
    return batches


def import_messages(
    user_id: str,
    messages: Iterable[models.ImportMessage | Mapping[str, Any]],
    *,
    generate_ids: bool,
    max_messages: int,
    max_bytes: int,
    max_resumes: int,
) -> Operation[models.ImportResult]:
    """Import in batches, in order; the rest of a batch the service stored
    only in part (503 import_incomplete) is sent again from where it stopped
    (details.resumeFrom), at most max_resumes times in a row without one
    message stored."""
    bodies = _import_body(messages, generate_ids=generate_ids)
    result = models.ImportResult(user_id=user_id)
    for batch in import_batches(
        user_id, bodies, max_messages=max_messages, max_bytes=max_bytes
    ):
        pending = batch
        stalled = 0
        while True:
            response = yield Request(
                "POST",
                "/api/v1/memories/import",
                body=encode({"userId": user_id, "messages": pending}),
            )
            result.requests += 1
            try:
                answer = parse(models.ImportResult, response)
            except ImportIncomplete as incomplete:
                details = incomplete.details
                result.imported += int(details.get("imported", 0))
                result.message_ids.update(details.get("messageIds", {}))
                stalled = 0 if details.get("imported") else stalled + 1
                if stalled > max_resumes:
                    raise
                # The messages not stored yet: what the service found of this
                # batch (by clientMessageId) is not sent twice.
                pending = pending[int(details["resumeFrom"]) :]
                continue
            result.imported += answer.imported
            result.message_ids.update(answer.message_ids)
            result.added += answer.added
            result.updated += answer.updated
            result.episodes += answer.episodes
            result.skipped += answer.skipped
            break
    return result


def send_error(exc: httpx.HTTPError) -> LTMError:
    """A transport failure as the SDK's exception."""
    from ltm_client.errors import LTMTimeout, LTMTransportError

    cls = LTMTimeout if isinstance(exc, httpx.TimeoutException) else LTMTransportError
    return cls(str(exc) or type(exc).__name__)
