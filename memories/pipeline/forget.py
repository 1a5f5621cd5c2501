"""Forget what an end user asks to have forgotten: one fact, a topic, or
everything (the whole user, as `forget_user` erases it)."""

import re
from dataclasses import dataclass, field
from enum import StrEnum

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Tenant
from memories.compaction import storage_compact
from memories.models import Memory, Message
from memories.outbox import vector_operations_retry, vector_sync_batch
from memories.pipeline.apply import MemoryChange
from memories.pipeline.decide import Op
from memories.pipeline.message import memory_view, record_usage
from memories.pipeline.pending import remember_users_pending
from memories.providers.embeddings import get_embedder
from memories.providers.llm import MemoryView, get_language_model
from memories.search import SearchHit, active_rows, keyword_ranking
from memories.search.filters import SearchFilters
from memories.selectors import memory_recall
from memories.text import content_words
from memories.user_data import user_data_forget
from memories.vectors import cosine, from_bytes
from memories.writes import Actor, memories_forget, user_write_lock

# Memories ranked for a request, and keyword matches looked at beyond them.
FORGET_CANDIDATES = 50
# How long a forget request waits for a worker remembering the user's earlier
# messages (async memory) before it answers 503 and forgets nothing.
FORGET_WAITS_FOR_MEMORY_SECONDS = 10
KEYWORD_MATCHES = 1000

# "Forget everything you know about me", "delete all my data", "forget me".
_EVERYTHING = re.compile(
    r"^\W*(?:please\s+)?(?:(?:can|could|would)\s+you\s+)?"
    r"(?:forget|delete|erase|remove|wipe|clear)\s+"
    r"(?:me|(?:absolutely\s+)?(?:everything|all)"
    r"(?:\s+(?:of\s+)?(?:my\s+(?:data|memories|information|info)|that|you\s+"
    r"(?:know|have|remember|stored|keep)(?:\s+(?:stored|saved|kept))?))?"
    r"(?:\s+(?:about|of|on)\s+me)?|(?:all\s+)?my\s+(?:data|memories|information))"
    r"(?:\s+please)?\W*$",
    re.IGNORECASE,
)


class Scope(StrEnum):
    MEMORIES = "memories"
    EVERYTHING = "everything"


@dataclass
class ForgetOutcome:
    message: Message | None
    reply: str
    scope: Scope = Scope.MEMORIES
    forgotten: list[MemoryChange] = field(default_factory=list)
    # Memories made tombstones: those named, and every copy of their words.
    count: int = 0
    calls: list = field(default_factory=list)


def asks_for_everything(text: str) -> bool:
    return bool(_EVERYTHING.match(text.strip()))


def forget_handle(
    *, tenant: Tenant, user_id: str, text: str, actor: str = Actor.API
) -> ForgetOutcome:
    """Forget the memories a natural-language request refers to."""
    vector_operations_retry(tenant=tenant)
    # What the user said before this request must be in memory to be forgotten.
    remember_users_pending(
        tenant=tenant, user_id=user_id, wait_seconds=FORGET_WAITS_FOR_MEMORY_SECONDS
    )
    if asks_for_everything(text):
        report = user_data_forget(tenant=tenant, user_id=user_id)
        storage_compact()
        count = report.memories_deleted
        return ForgetOutcome(
            message=None,
            reply=(
                f"I have forgotten everything I knew about you ({count} "
                f"memor{'y' if count == 1 else 'ies'})."
                if count
                else "I had nothing stored about you, so nothing was forgotten."
            ),
            scope=Scope.EVERYTHING,
            count=count,
        )
    llm = get_language_model()
    calls: list = []
    query = llm.forget_query(request=text)
    (vector,) = get_embedder().embed([query])
    candidates = _candidates(tenant=tenant, user_id=user_id, query=query, vector=vector)
    if llm.consolidates:
        # A model sees only memories related to the request: whatever a memory's
        # text says, an unrelated memory cannot be chosen.
        candidates = [
            hit
            for hit in candidates
            if hit.keyword_rank is not None
            or hit.similarity >= settings.LTM_LLM_FORGET_MIN_SCORE
        ]
    by_key = {str(hit.memory.vector_key): hit for hit in candidates}
    chosen_keys = llm.choose_forgotten(
        request=text, candidates=[memory_view(hit) for hit in candidates], calls=calls
    )
    # Whatever chose, a memory holding every word the request names is named.
    terms = content_words(query)
    if terms:
        chosen_keys = [
            *chosen_keys,
            *(
                key
                for key, hit in by_key.items()
                if terms <= content_words(hit.memory.text)
            ),
        ]
    chosen = [by_key[key] for key in dict.fromkeys(chosen_keys) if key in by_key]
    # A fact and the episode it came from often say the same words: told once.
    views: list[MemoryView] = list(
        {hit.memory.text: memory_view(hit) for hit in chosen}.values()
    )
    forgotten: list[MemoryChange] = []
    count = 0
    with transaction.atomic(), vector_sync_batch():
        user_write_lock(tenant_id=tenant.pk, user_id=user_id)
        # The request is kept as an event without its words: they name the fact.
        message = Message.objects.create(
            tenant=tenant,
            user_id=user_id,
            kind=Message.Kind.FORGET,
            text="",
            redacted_at=timezone.now(),
        )
        if chosen:
            gone = memories_forget(
                tenant=tenant,
                user_id=user_id,
                memory_ids=[hit.memory.pk for hit in chosen],
                actor=actor,
                reason="forget request",
            )
            count = len(gone)
            rows = Memory.objects.in_bulk([hit.memory.pk for hit in chosen])
            forgotten = [
                MemoryChange(Op.DELETE, rows[hit.memory.pk], hit.memory.text)
                for hit in chosen
            ]
    reply = llm.forget_reply(request=text, forgotten=views)
    record_usage(tenant, calls)
    return ForgetOutcome(
        message=message, reply=reply, forgotten=forgotten, count=count, calls=calls
    )


def _candidates(*, tenant: Tenant, user_id: str, query: str, vector) -> list[SearchHit]:
    """The memories ranked best for the request, and every memory sharing its
    words (a topic can span more memories than one ranking returns)."""
    hits = memory_recall(
        tenant=tenant,
        user_id=user_id,
        query=query,
        vector=vector,
        top_k=FORGET_CANDIDATES,
    )
    seen = {hit.memory.pk for hit in hits}
    matches = [
        pk
        for pk in keyword_ranking(
            tenant=tenant, user_id=user_id, query=query, limit=KEYWORD_MATCHES
        )
        if pk not in seen
    ]
    rows = active_rows(tenant, user_id, SearchFilters()).in_bulk(matches)
    for rank, pk in enumerate(matches, start=len(hits) + 1):
        if pk in rows:
            memory = rows[pk]
            hits.append(
                SearchHit(
                    memory=memory,
                    score=0.0,
                    similarity=cosine(from_bytes(memory.embedding), vector),
                    keyword_rank=rank,
                )
            )
    return hits
