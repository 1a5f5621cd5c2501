"""The asynchronous client: sends each request with httpx.AsyncClient."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import IO, Any

import httpx

from ltm_client import _core, models
from ltm_client._api import DEFAULT_TIMEOUT, _Methods, client_options
from ltm_client._core import IMPORT_MAX_BYTES, IMPORT_MAX_MESSAGES, RetryPolicy


class AsyncClient(_Methods):
    """LTM's API for asyncio: the methods of Client, to await. The token comes
    from `api_key` or LTM_API_KEY, the address from `base_url` or LTM_BASE_URL.
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
        http_client: httpx.AsyncClient | None = None,
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
        self._http = http_client or httpx.AsyncClient(timeout=self._config.timeout)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, request: _core.Request) -> httpx.Response:
        policy = self._config.retry
        started = time.monotonic()
        attempt = 1
        while True:
            try:
                response = await self._http.request(
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
            await asyncio.sleep(delay)
            attempt += 1

    async def _drive(self, operation):
        try:
            request = next(operation)
            while True:
                request = operation.send(await self._send(request))
        except StopIteration as done:
            return done.value

    def _run(self, operation):
        return self._drive(operation)

    async def memories(
        self,
        user_id: str,
        *,
        kind: str | None = None,
        status: str | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[models.Memory]:
        """Every memory of the user, a page fetched when the one before is used up."""
        cursor = None
        while True:
            page = await self.memory_page(
                user_id, kind=kind, status=status, limit=page_size, cursor=cursor
            )
            for memory in page.results:
                yield memory
            if not (cursor := page.next_cursor):
                return

    async def users(
        self, *, page_size: int | None = None
    ) -> AsyncIterator[models.EndUser]:
        """Every end user of the tenant, page by page as they are used."""
        cursor = None
        while True:
            page = await self.user_page(limit=page_size, cursor=cursor)
            for user in page.results:
                yield user
            if not (cursor := page.next_cursor):
                return

    async def export_user_to(self, user_id: str, file: IO[bytes]) -> int:
        """Write the user's export into a binary file as it streams; its bytes."""
        request = _core.export_user_request(user_id)
        written = 0
        async with self._http.stream(
            request.method,
            self._config.base_url + request.path,
            headers=self._config.request_headers(request),
            timeout=self._config.timeout,
        ) as response:
            if not response.is_success:
                await response.aread()
                _core.raise_for_error(response)
            async for chunk in response.aiter_bytes():
                file.write(chunk)
                written += len(chunk)
        return written
