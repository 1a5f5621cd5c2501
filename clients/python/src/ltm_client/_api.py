"""The public methods, defined once for both clients.

Each method builds its operation (ltm_client._core) and hands it to
`self._run`, which the sync client defines as "send and return" and the async
one as "return an awaitable". Iterating pages and streaming an export need a
loop of their own in each client; everything else is here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import httpx

from ltm_client import _core
from ltm_client._core import (
    IMPORT_MAX_BYTES,
    IMPORT_MAX_MESSAGES,
    Config,
    RetryPolicy,
    make_config,
)
from ltm_client.models import ImportMessage

DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=5.0)


class _Methods:
    _config: Config

    def _setup(
        self,
        *,
        api_key: str | None,
        base_url: str | None,
        timeout: float | httpx.Timeout,
        retry: RetryPolicy | None,
        import_max_messages: int,
        import_max_bytes: int,
        import_max_resumes: int,
    ) -> None:
        self._config = make_config(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            retry=retry,
            import_max_messages=import_max_messages,
            import_max_bytes=import_max_bytes,
        )
        self._import_max_resumes = import_max_resumes

    def _run(self, operation):  # pragma: no cover - each client's own
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        return self._config.base_url

    def message(self, user_id: str, text: str):
        """Send an end user's message: the reply, what was recalled and stored."""
        return self._run(_core.message(user_id, text))

    def forget(self, user_id: str, text: str):
        """Forget what the user asks, in their words."""
        return self._run(_core.forget(user_id, text))

    def search(
        self,
        user_id: str,
        query: str,
        *,
        top_k: int | None = None,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        speaker: str | None = None,
        slot: str | None = None,
        kind: str | None = None,
        role: str | None = None,
    ):
        """Hybrid search of the user's memories, best first."""
        return self._run(
            _core.search(
                user_id,
                query,
                top_k=top_k,
                start=start,
                end=end,
                speaker=speaker,
                slot=slot,
                kind=kind,
                role=role,
            )
        )

    def import_messages(
        self,
        user_id: str,
        messages: Iterable[ImportMessage | Mapping[str, Any]],
        *,
        generate_client_message_ids: bool = True,
    ):
        """Import past messages, oldest first, in batches within the service's
        limits; resumes a batch the service stored only in part."""
        return self._run(
            _core.import_messages(
                user_id,
                messages,
                generate_ids=generate_client_message_ids,
                max_messages=self._config.import_max_messages,
                max_bytes=self._config.import_max_bytes,
                max_resumes=self._import_max_resumes,
            )
        )

    def memory_page(
        self,
        user_id: str,
        *,
        kind: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ):
        """One page of the user's memories; `memories()` walks them all."""
        return self._run(
            _core.memory_page(
                user_id, kind=kind, status=status, limit=limit, cursor=cursor
            )
        )

    def get_memory(self, memory_id: str):
        """One memory with its history."""
        return self._run(_core.get_memory(memory_id))

    def delete_memory(self, memory_id: str):
        """Forget one memory (again: nothing happens)."""
        return self._run(_core.delete_memory(memory_id))

    def user_page(self, *, limit: int | None = None, cursor: str | None = None):
        """One page of your end users; `users()` walks them all."""
        return self._run(_core.user_page(limit=limit, cursor=cursor))

    def export_user(self, user_id: str):
        """Everything stored about the user (ltm-user-export, version 1)."""
        return self._run(_core.export_user(user_id))

    def erase_user(self, user_id: str):
        """Erase everything stored about the user, verified; idempotent."""
        return self._run(_core.erase_user(user_id))


def client_options(
    api_key: str | None = None,
    base_url: str | None = None,
    *,
    timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
    retry: RetryPolicy | None = None,
    import_max_messages: int = IMPORT_MAX_MESSAGES,
    import_max_bytes: int = IMPORT_MAX_BYTES,
    import_max_resumes: int = 10,
) -> dict[str, Any]:
    return {
        "api_key": api_key,
        "base_url": base_url,
        "timeout": timeout,
        "retry": retry,
        "import_max_messages": import_max_messages,
        "import_max_bytes": import_max_bytes,
        "import_max_resumes": import_max_resumes,
    }
