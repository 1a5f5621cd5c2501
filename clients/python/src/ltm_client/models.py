"""Typed results of the service's answers (pydantic), with snake_case names.

Fields the service adds later are kept (extra="allow"), so an older client
reads a newer service.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="allow"
    )


class Memory(Model):
    id: str
    kind: str
    role: str
    text: str
    status: str
    happened_at: datetime | None = None
    time_granularity: str = ""
    created_at: datetime
    updated_at: datetime
    source_message_id: int | None = None


class RecalledMemory(Memory):
    score: float
    similarity: float


class ChangedMemory(Memory):
    previous_text: str = ""


class LanguageModelCall(Model):
    purpose: str
    model: str
    input_tokens: int
    output_tokens: int
    outcome: str


class MessageResult(Model):
    reply: str
    user_id: str
    message_id: int | None = None
    recalled: list[RecalledMemory] = []
    added: list[ChangedMemory] = []
    updated: list[ChangedMemory] = []
    deleted: list[ChangedMemory] = []
    episodes: list[Memory] = []
    usage: list[LanguageModelCall] = []


class ForgetResult(Model):
    reply: str
    user_id: str
    scope: Literal["memories", "everything"] | str
    forgotten_count: int
    forgotten: list[ChangedMemory] = []
    usage: list[LanguageModelCall] = []


class MemoryEvent(Model):
    action: str
    old_text: str
    new_text: str
    actor: str
    reason: str
    message_id: int | None = None
    valid_until: datetime | None = None
    created_at: datetime


class MemoryDetail(Memory):
    user_id: str
    history: list[MemoryEvent] = []


class ImportMessage(Model):
    """One message to import: what was said and when."""

    text: str
    sent_at: datetime | str
    role: Literal["user", "assistant", "other"] = "user"
    speaker: str = ""
    client_message_id: str = ""


class ImportResult(Model):
    """An import's answers, all its batches together."""

    user_id: str
    imported: int = 0
    skipped: list[str] = []
    message_ids: dict[str, int] = {}
    added: list[ChangedMemory] = []
    updated: list[ChangedMemory] = []
    episodes: int = 0
    # Requests made: batches, and batches sent again after import_incomplete.
    requests: int = Field(default=0, exclude=True)


class Provenance(Model):
    message_id: int | None = None
    client_message_id: str = ""
    sent_at: datetime
    speaker: str = ""


class SearchHit(RecalledMemory):
    speaker: str = ""
    provenance: list[Provenance] = []
    keyword_rank: int | None = None
    vector_rank: int | None = None


class SearchResult(Model):
    user_id: str
    hits: list[SearchHit] = []


class MemoryPage(Model):
    results: list[Memory]
    next_cursor: str | None = None


class EndUser(Model):
    user_id: str
    memories: int
    facts: int
    episodes: int
    messages: int
    last_message_at: datetime | None = None


class EndUserPage(Model):
    results: list[EndUser]
    next_cursor: str | None = None


class ErasureRemaining(Model):
    vectors: int
    memories_with_content: int
    history_events_with_text: int
    messages_with_text: int


class UserErasure(Model):
    user_id: str
    memories_erased: int
    memories_deleted: int
    history_events_blanked: int
    messages_purged: int
    vectors_deleted: int
    verified: bool
    remaining: ErasureRemaining


class UserExport(Model):
    """The ltm-user-export format, version 1; records as the service wrote
    them (camelCase keys)."""

    format: str
    version: int
    tenant: str
    user_id: str
    exported_at: datetime
    memories: list[dict[str, Any]]
    messages: list[dict[str, Any]]
