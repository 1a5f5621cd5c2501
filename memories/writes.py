"""Create, update and tombstone: the only functions that write memories.

Each writes the memory rows, their history and provenance, and their outbox
entries in the caller's transaction, so the audit table and the vector index
change together.
"""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import numpy as np
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Tenant
from memories.compaction import compact_after_commit
from memories.models import (
    ExportJob,
    ExportPart,
    Memory,
    MemoryEvent,
    MemorySource,
    Message,
    VectorOperation,
)
from memories.outbox import outbox_record
from memories.providers.embeddings import get_embedder
from memories.search.document import keyword_body, spoken
from memories.text import digest
from memories.vectors import to_bytes


class Actor(StrEnum):
    """Who changed a memory, as its history records it."""

    API = "api"
    IMPORT = "import"
    FORGET_USER = "forget_user"


STAFF_ACTOR_PREFIX = "staff:"

# Characters of context (neighbouring messages' words) kept per memory.
MAX_CONTEXT_CHARS = 2000

# What a forgotten memory keeps: ids, kind, role, status and times, no content.
TOMBSTONE = {
    "text": "",
    "content_hash": "",
    "search_body": "",
    "context_text": "",
    "embedding": b"",
    "slot": "",
    "speaker": "",
    "status": Memory.Status.DELETED,
}
# A row still holding some of the content a tombstone has not.
HOLDS_CONTENT = (
    ~Q(text="")
    | ~Q(content_hash="")
    | ~Q(search_body="")
    | ~Q(context_text="")
    | ~Q(embedding=b"")
    | ~Q(slot="")
    | ~Q(speaker="")
)
EVENT_HOLDS_TEXT = ~Q(old_text="") | ~Q(new_text="")
MESSAGE_HOLDS_TEXT = ~Q(text="") | ~Q(speaker="")


def user_write_lock(*, tenant_id: int, user_id: str) -> None:
    """Serialise one end user's writes until the transaction ends.

    Two messages of one user decide against what is stored, then write; run at
    once, each would wait for the other's rows (a deadlock) or decide without
    the other's facts. PostgreSQL takes a transaction-scoped advisory lock per
    (tenant, user); SQLite's transactions take the write lock when they begin
    (IMMEDIATE), which already serialises them.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [tenant_id, user_id]
            )


def memory_digest(*, kind: str, role: str, speaker: str, text: str) -> str:
    """What makes two memories copies of each other: the same words, of the same
    kind, said by the same speaker in the same role."""
    return digest(kind, role, speaker, text)


def memory_build(
    *,
    tenant: Tenant,
    user_id: str,
    kind: str,
    text: str,
    vector: np.ndarray,
    message: Message | None,
    actor: str,
    slot: str = "",
    happened_at: datetime | None = None,
    time_granularity: str = "",
    context_text: str = "",
    passage: int = 0,
) -> Memory:
    """A new memory, unsaved: `memories_create` stores it."""
    embedder = get_embedder()
    speaker = message.speaker if message else ""
    role = message.role if message else ""
    return Memory(
        tenant=tenant,
        user_id=user_id,
        kind=kind,
        role=role,
        passage=passage,
        text=text,
        content_hash=memory_digest(kind=kind, role=role, speaker=speaker, text=text),
        search_body=keyword_body(speaker=speaker, text=text),
        slot=slot,
        speaker=speaker,
        context_text=context_text[:MAX_CONTEXT_CHARS],
        embedding_model=embedder.model_name,
        embedding_dimension=embedder.dimension,
        embedding=to_bytes(vector),
        source_message=message,
        happened_at=happened_at or (message.sent_at if message else None),
        time_granularity=time_granularity if happened_at else "",
        updated_by=actor,
    )


@dataclass
class Created:
    """What `memories_create` stored, and which were copies of active memories."""

    created: list[Memory]
    # (the memory not stored, the active one with the same content)
    copies: list[tuple[Memory, Memory]]


@transaction.atomic
def memories_create(*, memories: list[Memory], actor: str) -> Created:
    """Store new memories with their provenance, history and pending vector
    writes, in a few bulk queries.

    The database keeps one active copy of each content per user: a memory whose
    copy another request stored first (concurrently) is not stored; its message
    becomes one more source of that copy instead.
    """
    if not memories:
        return Created([], [])
    Memory.objects.bulk_create(memories, ignore_conflicts=True)
    # Only the keys and ids: the rows just written need not be read back whole.
    stored = dict(
        Memory.objects.filter(
            vector_key__in=[memory.vector_key for memory in memories]
        ).values_list("vector_key", "pk")
    )
    created, lost = [], []
    for memory in memories:
        pk = stored.get(memory.vector_key)
        if pk is None:
            lost.append(memory)
        else:
            memory.pk = pk
            memory._state.adding = False
            created.append(memory)
    copies = []
    if lost:
        first = lost[0]
        active = Memory.objects.for_user(first.tenant, first.user_id).filter(
            status=Memory.Status.ACTIVE,
            content_hash__in=[memory.content_hash for memory in lost],
        )
        by_content = {(row.kind, row.content_hash): row for row in active}
        for memory in lost:
            original = by_content.get((memory.kind, memory.content_hash))
            if original is not None:
                copies.append((memory, original))
    sources_add(
        [(memory, memory.source_message) for memory in created]
        + [(original, memory.source_message) for memory, original in copies]
    )
    MemoryEvent.objects.bulk_create(
        [
            MemoryEvent(
                memory=memory,
                action=MemoryEvent.Action.ADD,
                new_text=memory.text,
                actor=actor,
                message=memory.source_message,
            )
            for memory in created
        ]
    )
    if created:
        outbox_record([memory.pk for memory in created], tenant_id=created[0].tenant_id)
    return Created(created, copies)


def sources_add(pairs: list[tuple[Memory, Message | None]]) -> None:
    """Record messages that stated memories (again)."""
    MemorySource.objects.bulk_create(
        [
            MemorySource(memory=memory, message=message)
            for memory, message in pairs
            if message is not None and memory.pk is not None
        ],
        ignore_conflicts=True,
    )


@transaction.atomic
def memory_update(
    *,
    memory: Memory,
    text: str,
    vector: np.ndarray,
    message: Message | None,
    actor: str,
    reason: str = "",
    slot: str | None = None,
    happened_at: datetime | None = None,
    time_granularity: str = "",
    context_text: str | None = None,
) -> str:
    """Replace a memory's text (the old text goes to history); returns the old text."""
    previous_text = memory.text
    if message is not None:
        memory.source_message = message
        memory.speaker = message.speaker
        memory.role = message.role
        memory.happened_at = happened_at or message.sent_at
        memory.time_granularity = time_granularity if happened_at else ""
        sources_add([(memory, message)])
    memory.text = text
    memory.content_hash = memory_digest(
        kind=memory.kind, role=memory.role, speaker=memory.speaker, text=text
    )
    memory.search_body = keyword_body(speaker=memory.speaker, text=text)
    memory.embedding = to_bytes(vector)
    if slot is not None:
        memory.slot = slot
    if context_text is not None:
        memory.context_text = context_text[:MAX_CONTEXT_CHARS]
    memory.updated_at = timezone.now()
    memory.updated_by = actor
    memory.save()
    MemoryEvent.objects.create(
        memory=memory,
        action=MemoryEvent.Action.UPDATE,
        old_text=previous_text,
        new_text=memory.text,
        actor=actor,
        reason=reason,
        message=message,
        valid_until=message.sent_at if message is not None else timezone.now(),
    )
    outbox_record([memory.pk], tenant_id=memory.tenant_id)
    return previous_text


def memory_status_set(
    memory: Memory, *, status: str, action: str, actor: str, reason: str
) -> Memory:
    """Hide or restore: the row keeps its content; the vector follows the status."""
    memory.status = status
    memory.updated_at = timezone.now()
    memory.updated_by = actor
    memory.save(update_fields=["status", "updated_at", "updated_by"])
    MemoryEvent.objects.create(memory=memory, action=action, actor=actor, reason=reason)
    outbox_record([memory.pk], tenant_id=memory.tenant_id)
    return memory


def context_add(memories: list[Memory], words: str) -> None:
    """Add a neighbour's words to memories' keyword context."""
    changed = []
    for memory in memories:
        if words and words not in memory.context_text:
            memory.context_text = f"{memory.context_text} {words}".strip()[
                :MAX_CONTEXT_CHARS
            ]
            memory.save(update_fields=["context_text"])
            changed.append(memory.pk)
    if changed:
        # The store's copy of the keyword document changes with it.
        outbox_record(changed, tenant_id=memories[0].tenant_id)


def _context_scrub(*, tenant: Tenant, user_id: str, words: str) -> None:
    """Remove a message's words from every memory's keyword context."""
    neighbours = list(
        Memory.objects.for_user(tenant, user_id).filter(context_text__contains=words)
    )
    for neighbour in neighbours:
        neighbour.context_text = " ".join(
            neighbour.context_text.replace(words, " ").split()
        )
        neighbour.save(update_fields=["context_text"])
    if neighbours:
        outbox_record([memory.pk for memory in neighbours], tenant_id=tenant.pk)


# Exports whose file exists or is being written.
EXPORTS_LIVE = (ExportJob.State.QUEUED, ExportJob.State.RUNNING, ExportJob.State.DONE)


def exports_discard(*, tenant: Tenant, user_ids: set[str]) -> int:
    """Throw away the stored export files of these users, whose data a forget
    or an erasure is changing: a file holds their words. The jobs stay, state
    `discarded`, without content; an export being written is discarded too and
    its worker throws its parts away (memories/user_data/exports.py)."""
    jobs = ExportJob.objects.filter(
        tenant=tenant, user_id__in=user_ids, state__in=EXPORTS_LIVE
    )
    ExportPart.objects.filter(job__in=jobs).delete()
    return jobs.update(state=ExportJob.State.DISCARDED, finished_at=timezone.now())


def messages_redact(*, tenant: Tenant, user_id: str, message_ids: set[int]) -> None:
    """Blank messages' text and speaker, and remove their words from the keyword
    context of the memories beside them."""
    exports_discard(tenant=tenant, user_ids={user_id})
    messages = Message.objects.for_user(tenant, user_id).filter(pk__in=message_ids)
    for message in messages.filter(MESSAGE_HOLDS_TEXT):
        _context_scrub(
            tenant=tenant,
            user_id=user_id,
            words=spoken(speaker=message.speaker, text=message.text),
        )
    messages.filter(MESSAGE_HOLDS_TEXT | Q(redacted_at__isnull=True)).update(
        text="", speaker="", redacted_at=timezone.now()
    )


def memories_tombstone(
    *,
    memory_ids: list[int],
    tenant: Tenant,
    actor: str,
    reason: str,
    enqueue: bool = True,
) -> list[int]:
    """Turn memories into tombstones without content, in a few statements.

    History keeps its events without their text, and each newly deleted memory
    gets a delete event; a tombstone from before keeps the time and actor of its
    deletion. Returns the outbox entries that delete the vectors: applied after
    commit, or, with `enqueue=False`, left for the caller to apply at once.
    """
    now = timezone.now()
    rows = Memory.objects.filter(tenant=tenant, pk__in=memory_ids)
    newly_deleted = list(
        rows.exclude(status=Memory.Status.DELETED).values_list("pk", flat=True)
    )
    Memory.objects.filter(pk__in=newly_deleted).update(
        **TOMBSTONE, updated_at=now, updated_by=actor
    )
    # Tombstones left with content (an interrupted erasure) are finished too.
    rows.filter(HOLDS_CONTENT).update(**TOMBSTONE)
    MemoryEvent.objects.filter(memory_id__in=memory_ids).filter(
        EVENT_HOLDS_TEXT
    ).update(old_text="", new_text="")
    MemoryEvent.objects.bulk_create(
        [
            MemoryEvent(
                memory_id=pk,
                action=MemoryEvent.Action.DELETE,
                actor=actor,
                reason=reason,
                created_at=now,
            )
            for pk in newly_deleted
        ]
    )
    if enqueue:
        return outbox_record(list(memory_ids), tenant_id=tenant.pk)
    return [
        operation.pk
        for operation in VectorOperation.objects.bulk_create(
            [VectorOperation(memory_id=pk, tenant=tenant) for pk in memory_ids]
        )
    ]


@transaction.atomic
def memories_forget(
    *, tenant: Tenant, user_id: str, memory_ids: list[int], actor: str, reason: str
) -> list[int]:
    """Forget memories and every copy of their words: the messages they came
    from (redacted), those messages' episodes, and the keyword context of the
    memories beside them. Returns the ids of every memory tombstoned."""
    user_write_lock(tenant_id=tenant.pk, user_id=user_id)
    chosen = Memory.objects.for_user(tenant, user_id).filter(pk__in=memory_ids)
    messages = set(
        MemorySource.objects.filter(memory__in=chosen).values_list(
            "message_id", flat=True
        )
    ) | {
        pk
        for pk in chosen.values_list("source_message_id", flat=True)
        if pk is not None
    }
    # An episode is its message's words: a redacted message leaves none.
    episodes = Memory.objects.for_user(tenant, user_id).filter(
        kind=Memory.Kind.EPISODE, sources__in=messages
    )
    forgotten = sorted(
        set(chosen.values_list("pk", flat=True))
        | set(episodes.values_list("pk", flat=True))
    )
    locked = list(
        Memory.objects.select_for_update()
        .filter(pk__in=forgotten)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    messages_redact(tenant=tenant, user_id=user_id, message_ids=messages)
    memories_tombstone(memory_ids=locked, tenant=tenant, actor=actor, reason=reason)
    compact_after_commit()
    return locked


def memory_delete(*, memory: Memory, actor: str, reason: str = "") -> Memory:
    """Forget one memory (see `memories_forget`); a tombstone without content stays."""
    memories_forget(
        tenant=memory.tenant,
        user_id=memory.user_id,
        memory_ids=[memory.pk],
        actor=actor,
        reason=reason,
    )
    memory.refresh_from_db()
    return memory
