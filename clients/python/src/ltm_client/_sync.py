"""The synchronous client: sends each request with httpx.Client and waits."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import IO, Any

import httpx

from ltm_client import _core, models
from ltm_client._api import DEFAULT_TIMEOUT, _Methods, client_options
from ltm_client._core import IMPORT_MAX_BYTES, IMPORT_MAX_MESSAGES, RetryPolicy


class Client(_Methods):
    """LTM's API, synchronously. The token comes from `api_key` or LTM_API_KEY,
    the address from `base_url` or LTM_BASE_URL (default http://127.0.0.1:8000).
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        import_max_messages: int = IMPORT_MAX_MESSAGES,
        import_max_bytes: int = IMPORT_MAX_BYTES,
        import_max_resumes: int = 10,
        http_client: httpx.Client | None = None,
    ):
        self._setup(
            **client_options(
                api_key,
                base_url,
                timeout=timeout,
                retry=retry,
                import_max_messages=import_max_messages,
                import_max_bytes=import_max_bytes,
                import_max_resumes=import_max_resumes,
            )
        )
        self._http = http_client or httpx.Client(timeout=self._config.timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, request: _core.Request) -> httpx.Response:
        policy = self._config.retry
        started = time.monotonic()
        attempt = 1
        while True:
            try:
                response = self._http.request(
                    request.method,
                    self._config.base_url + request.path,
                    params=request.params,
                    content=request.body,
                    headers=self._config.request_headers(request),
                    timeout=self._config.timeout,
                )
            except httpx.HTTPError as exc:
                raise _core.send_error(exc) from exc
            delay = policy.delay(attempt, response)
            if delay is None or time.monotonic() - started + delay > policy.max_total:
                return response
            time.sleep(delay)
            attempt += 1

    def _run(self, operation):
        try:
            request = next(operation)
            while True:
                request = operation.send(self._send(request))
        except StopIteration as done:
            return done.value

    def memories(
        self,
        user_id: str,
        *,
        kind: str | None = None,
        status: str | None = None,
        page_size: int | None = None,
    ) -> Iterator[models.Memory]:
        """Every memory of the user, a page fetched when the one before is used up."""
        cursor = None
        while True:
            page = self.memory_page(
                user_id, kind=kind, status=status, limit=page_size, cursor=cursor
            )
            yield from page.results
            if not (cursor := page.next_cursor):
                return

    def users(self, *, page_size: int | None = None) -> Iterator[models.EndUser]:
        """Every end user of the tenant, page by page as they are used."""
        cursor = None
        while True:
            page = self.user_page(limit=page_size, cursor=cursor)
            yield from page.results
            if not (cursor := page.next_cursor):
                return

    def export_user_to(self, user_id: str, file: IO[bytes]) -> int:
        """Write the user's export into a binary file as it streams; its bytes."""
        request = _core.export_user_request(user_id)
        written = 0
        with self._http.stream(
            request.method,
            self._config.base_url + request.path,
            headers=self._config.request_headers(request),
            timeout=self._config.timeout,
        ) as response:
            if not response.is_success:
                response.read()
                _core.raise_for_error(response)
            for chunk in response.iter_bytes():
                file.write(chunk)
                written += len(chunk)
        return written
