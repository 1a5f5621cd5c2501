"""A LangChain retriever over LTM search (`pip install 'ltm-client[langchain]'`).

`LTMRetriever` searches one end user's memories through `Client.search` (sync)
and `AsyncClient.search` (async) and returns LangChain `Document`s.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

try:
    from langchain_core.callbacks import (
        AsyncCallbackManagerForRetrieverRun,
        CallbackManagerForRetrieverRun,
    )
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
    from langchain_core.runnables.config import run_in_executor
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "ltm_client.langchain needs langchain-core: pip install 'ltm-client[langchain]'"
    ) from exc

from pydantic import ConfigDict, Field

from ltm_client._async import AsyncClient
from ltm_client._sync import Client
from ltm_client.models import SearchHit, SearchResult

__all__ = ["LTMRetriever", "hit_to_document"]

# Options of a search that a call may override: `retriever.invoke(q, top_k=3)`.
SEARCH_OPTIONS = ("top_k", "kind", "role", "speaker", "slot", "start", "end")


def hit_to_document(hit: SearchHit) -> Document:
    """A search hit as a Document: its text, and what LTM says about it."""
    return Document(
        page_content=hit.text,
        id=hit.id,
        metadata={
            "id": hit.id,
            "kind": hit.kind,
            "role": hit.role,
            "speaker": hit.speaker,
            "score": hit.score,
            "similarity": hit.similarity,
            "happened_at": hit.happened_at.isoformat() if hit.happened_at else None,
            "time_granularity": hit.time_granularity,
            "provenance": [
                provenance.model_dump(mode="json", by_alias=False)
                for provenance in hit.provenance
            ],
        },
    )


class LTMRetriever(BaseRetriever):
    """One end user's memories in LTM, best first (facts and episodes ranked
    together by LTM's hybrid search).

    `client` serves `invoke`, `async_client` serves `ainvoke` (really async,
    with httpx.AsyncClient); given neither, both are made from LTM_API_KEY and
    LTM_BASE_URL. Given only `client`, `ainvoke` runs it in a thread.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    user_id: str
    """Your id of the end user whose memories are searched."""
    client: Client | None = Field(default=None, exclude=True)
    async_client: AsyncClient | None = Field(default=None, exclude=True)
    top_k: int | None = None
    """How many memories at most (the service's default when None)."""
    kind: str | None = None
    """Only `fact` or only `episode`."""
    role: str | None = None
    """Only what `user`, `assistant` or `other` said."""
    speaker: str | None = None
    slot: str | None = None
    start: datetime | str | None = None
    """Only memories of this time or later (with `end`, LTM's timeRange)."""
    end: datetime | str | None = None

    def model_post_init(self, __context: Any) -> None:
        if self.client is None and self.async_client is None:
            self.client = Client()
            self.async_client = AsyncClient()

    def _options(self, overrides: dict[str, Any]) -> dict[str, Any]:
        unknown = set(overrides) - set(SEARCH_OPTIONS)
        if unknown:
            raise TypeError(f"LTMRetriever got unknown arguments: {sorted(unknown)}")
        options = {name: getattr(self, name) for name in SEARCH_OPTIONS}
        options.update(overrides)
        return options

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        **kwargs: Any,
    ) -> list[Document]:
        if self.client is None:
            raise ValueError("LTMRetriever has no sync client: pass client=Client()")
        result = self.client.search(self.user_id, query, **self._options(kwargs))
        return _documents(result)

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        **kwargs: Any,
    ) -> list[Document]:
        if self.async_client is None:
            return await run_in_executor(
                None,
                self._get_relevant_documents,
                query,
                run_manager=run_manager.get_sync(),
                **kwargs,
            )
        result = await self.async_client.search(
            self.user_id, query, **self._options(kwargs)
        )
        return _documents(result)


def _documents(result: SearchResult) -> list[Document]:
    return [hit_to_document(hit) for hit in result.hits]
