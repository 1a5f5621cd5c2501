"""Everything stored about one end user of a tenant: erasing it, and exporting it.

Erasure (`user_data_forget`) works a batch of memories at a time, each batch in
its own transaction: the rows lose their content and become tombstones, their
history loses its text, and one outbox entry per memory records the vector
delete, which is then made with one `store.delete` call for the whole batch.
What an interrupted run left behind still matches the selection (content,
history text, a pending outbox entry), so running it again finishes the job.
Messages are kept as tombstones like memories: ids, role, times and the
client's message id stay; text and speaker go. `keyword_index_compact` then
rewrites SQLite's full-text index, which would otherwise keep the erased words'
stems until its segments merge.

Export (`user_data_export`) streams the user's memories (with history and
provenance) and messages a chunk of rows at a time, writing each record as it is
read, in the versioned format described in README.md.
"""

import json
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import (
    DateTimeField,
    Exists,
    F,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Value,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import Tenant
from memories.compaction import keyword_index_compact, storage_compact  # noqa: F401
from memories.models import ExportPart, Memory, MemoryEvent, Message, VectorOperation
from memories.vectorstores import Namespace, get_vector_store
from memories.writes import (
    EVENT_HOLDS_TEXT,
    HOLDS_CONTENT,
    MESSAGE_HOLDS_TEXT,
    Actor,
    exports_discard,
    memories_tombstone,
)

ACTOR_FORGET_USER = f"operator:{Actor.FORGET_USER}"
FORGET_USER_REASON = "all of the end user's data erased"
DEFAULT_BATCH_SIZE = 500
# Listed vector keys looked up against the rows in one query.
LOOKUP_CHUNK = 1000

EXPORT_FORMAT = "ltm-user-export"
EXPORT_VERSION = 1
EXPORT_FORMATS = ("json", "jsonl")
# Rows read per query while exporting (with their history and provenance).
EXPORT_CHUNK = 500

# Called with how many more memories a forget has finished, or how many more
# records an export has written, so that a command can show progress.
Progress = Callable[[int], None]


def _no_progress(done: int) -> None:
    return None


# --- what still holds the user's data --------------------------------------
# (HOLDS_CONTENT and its siblings in memories.writes, beside the tombstone.)
def _namespace(tenant: Tenant, user_id: str) -> Namespace:
    return Namespace(tenant_id=tenant.pk, user_id=user_id)


def _memories_to_forget(tenant: Tenant, user_id: str) -> QuerySet[Memory]:
    """The user's memories that still hold content or may still have a vector:
    any status but deleted (active, and any other that keeps content), and
    deleted ones left with content, history text or a vector delete pending
    (it failed, here or in the service)."""
    live = [
        status for status in Memory.Status.values if status != Memory.Status.DELETED
    ]
    # The tenant's pending outbox entries are few: computed once per query. A
    # lookup per row would walk the index of pending entries each time, and
    # every entry ever written passes through it.
    pending_writes = VectorOperation.objects.filter(
        tenant=tenant, applied_at__isnull=True
    ).values("memory_id")
    # A memory's own events, found through their memory's index.
    history_with_text = MemoryEvent.objects.filter(memory=OuterRef("pk")).filter(
        EVENT_HOLDS_TEXT
    )
    return Memory.objects.for_user(tenant, user_id).filter(
        Q(status__in=live)
        | HOLDS_CONTENT
        | Q(pk__in=pending_writes)
        | Exists(history_with_text)
    )


def _pages_in_time_order(
    rows: QuerySet, time_field: str, batch_size: int
) -> Iterator[list[int]]:
    """The primary keys of `rows`, a batch at a time, in (time, pk) order.

    Keyset pages over the (tenant, user, time) index: each query reads one
    batch past the last one, so a user of any size is read in one pass, and
    rows erased since (whose time does not change) are never read again. A
    queue-like "first N still to do" would re-read, on PostgreSQL, the index
    entries every earlier batch left behind until vacuum removes them.
    """
    # Rows without a time (few: a memory made without a message) by key alone.
    untimed = rows.filter(**{f"{time_field}__isnull": True}).order_by("pk")
    last_pk = 0
    while batch := list(
        untimed.filter(pk__gt=last_pk).values_list("pk", flat=True)[:batch_size]
    ):
        last_pk = batch[-1]
        yield batch
    timed = rows.filter(**{f"{time_field}__isnull": False}).order_by(time_field, "pk")
    page = timed
    while batch := list(page.values_list("pk", time_field)[:batch_size]):
        last_pk, last_time = batch[-1]
        yield [pk for pk, _ in batch]
        page = timed.filter(**{f"{time_field}__gte": last_time}).filter(
            Q(**{f"{time_field}__gt": last_time}) | Q(pk__gt=last_pk)
        )


@dataclass(frozen=True)
class UserDataCounts:
    """What is stored about one user, as a dry run of forget_user reports it."""

    memories: int
    memories_to_forget: int
    messages: int
    messages_with_text: int
    events_with_text: int
    vectors: int


def user_data_counts(*, tenant: Tenant, user_id: str) -> UserDataCounts:
    """Count what is stored about a user; changes nothing."""
    memories = Memory.objects.for_user(tenant, user_id)
    messages = Message.objects.for_user(tenant, user_id)
    return UserDataCounts(
        memories=memories.count(),
        memories_to_forget=_memories_to_forget(tenant, user_id).count(),
        messages=messages.count(),
        messages_with_text=messages.filter(MESSAGE_HOLDS_TEXT).count(),
        events_with_text=MemoryEvent.objects.filter(
            memory__tenant=tenant, memory__user_id=user_id
        )
        .filter(EVENT_HOLDS_TEXT)
        .count(),
        vectors=get_vector_store().count(namespace=_namespace(tenant, user_id)),
    )


@dataclass(frozen=True)
class UserDataRemaining:
    """What a forget left of a user: all zero when it is complete."""

    vectors: int
    memories_with_content: int
    events_with_text: int
    messages_with_text: int
    export_files: int = 0

    @property
    def total(self) -> int:
        return (
            self.vectors
            + self.memories_with_content
            + self.events_with_text
            + self.messages_with_text
            + self.export_files
        )


def user_data_remaining(
    *, tenant: Tenant, user_id: str, vectors: int | None = None
) -> UserDataRemaining:
    """Count the user's vectors in the store and rows still holding text.

    `vectors` is a count the caller has just listed, to spare a second listing
    of the index (on S3 Vectors, listing reads the tenant's whole index).
    """
    if vectors is None:
        vectors = get_vector_store().count(namespace=_namespace(tenant, user_id))
    return UserDataRemaining(
        vectors=vectors,
        memories_with_content=Memory.objects.for_user(tenant, user_id)
        .filter(HOLDS_CONTENT)
        .count(),
        events_with_text=MemoryEvent.objects.filter(
            memory__tenant=tenant, memory__user_id=user_id
        )
        .filter(EVENT_HOLDS_TEXT)
        .count(),
        messages_with_text=Message.objects.for_user(tenant, user_id)
        .filter(MESSAGE_HOLDS_TEXT)
        .count(),
        export_files=ExportPart.objects.filter(job__tenant=tenant, job__user_id=user_id)
        .values("job")
        .distinct()
        .count(),
    )


def user_data_holds_content(*, tenant: Tenant, user_id: str) -> bool:
    """Whether any memory or message of the user still holds text: false for a
    user erased (only tombstones left) or never seen."""
    return (
        Memory.objects.for_user(tenant, user_id).filter(HOLDS_CONTENT).exists()
        or Message.objects.for_user(tenant, user_id).filter(MESSAGE_HOLDS_TEXT).exists()
    )


# --- forgetting --------------------------------------------------------------
@dataclass
class ForgetReport:
    """What one forget of a user did."""

    memories_forgotten: int = 0  # rows whose content was erased
    memories_deleted: int = 0  # of which were not deleted before
    events_blanked: int = 0
    vector_deletes: int = 0  # keys sent to the store
    leftover_vectors_deleted: int = 0  # found by listing the namespace
    messages_purged: int = 0
    # Vectors listed in the user's namespace at the end (the verification's
    # count when nothing was deleted after the listing; else None).
    vectors_listed_after: int | None = None


def user_data_forget_count(*, tenant: Tenant, user_id: str) -> int:
    """How many memories a forget of the user has to work through."""
    return _memories_to_forget(tenant, user_id).count()


def user_data_forget(
    *,
    tenant: Tenant,
    user_id: str,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
) -> ForgetReport:
    """Erase everything stored about a user; tombstones without content stay.

    Raises what the vector store raised if a delete fails: the batches before
    it are complete, the failed batch's rows are erased with their vector
    deletes left pending in the outbox, and running it again finishes the job.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1.")
    progress = progress or _no_progress
    report = ForgetReport()
    exports_discard(tenant=tenant, user_ids={user_id})
    # One pass; a batch whose vector delete fails raises, and the next run
    # finds it again (its outbox entries still pending).
    for batch in _pages_in_time_order(
        _memories_to_forget(tenant, user_id), "happened_at", batch_size
    ):
        _forget_memories(
            tenant=tenant, user_id=user_id, memory_ids=batch, report=report
        )
        progress(len(batch))
    report.messages_purged = _purge_messages(
        tenant=tenant, user_id=user_id, batch_size=batch_size
    )
    _delete_leftover_vectors(
        tenant=tenant, user_id=user_id, batch_size=batch_size, report=report
    )
    return report


def _forget_memories(
    *, tenant: Tenant, user_id: str, memory_ids: list[int], report: ForgetReport
) -> None:
    """Erase one batch of a user's memories, then delete their vectors."""
    now = timezone.now()
    with transaction.atomic():
        # Locked so that an outbox entry being applied to one of them (a put)
        # finishes before, and any applied after sees the tombstone. By primary
        # key alone (the ids come from the user's own rows), in its order.
        memories = list(
            Memory.objects.select_for_update()
            .filter(pk__in=memory_ids)
            .order_by("pk")
            .values_list("pk", "status", "vector_key")
        )
        ids = [pk for pk, _, _ in memories]
        newly_deleted = [
            pk for pk, status, _ in memories if status != Memory.Status.DELETED
        ]
        report.events_blanked += (
            MemoryEvent.objects.filter(memory_id__in=ids)
            .filter(EVENT_HOLDS_TEXT)
            .count()
        )
        # Entries still pending are superseded by the delete recorded here:
        # whatever they were for, the vector's fate is now deletion.
        VectorOperation.objects.filter(
            memory_id__in=ids, applied_at__isnull=True
        ).update(applied_at=now)
        operation_ids = memories_tombstone(
            memory_ids=ids,
            tenant=tenant,
            actor=ACTOR_FORGET_USER,
            reason=FORGET_USER_REASON,
            enqueue=False,
        )
    report.memories_forgotten += len(ids)
    report.memories_deleted += len(newly_deleted)
    keys = [str(key) for _, _, key in memories]
    # Directly, one call for the batch (the store splits it into its own
    # request sizes); the outbox entries say so once it is done, and stay
    # pending for sync_vectors or the next run if it fails.
    try:
        get_vector_store().delete(namespace=_namespace(tenant, user_id), keys=keys)
    except Exception as exc:
        VectorOperation.objects.filter(pk__in=operation_ids).update(
            attempts=F("attempts") + 1, last_error=str(exc)[:2000]
        )
        raise
    VectorOperation.objects.filter(
        pk__in=operation_ids, applied_at__isnull=True
    ).update(applied_at=timezone.now())
    report.vector_deletes += len(keys)


def _purge_messages(*, tenant: Tenant, user_id: str, batch_size: int) -> int:
    """Blank the text and speaker of the user's messages; the rows stay."""
    purged = 0
    now = timezone.now()
    # Every message of the user once (a rerun finds little to do, and reads
    # them all once to know it).
    messages = Message.objects.for_user(tenant, user_id)
    for batch in _pages_in_time_order(messages, "sent_at", batch_size):
        purged += (
            Message.objects.filter(pk__in=batch)
            .filter(
                MESSAGE_HOLDS_TEXT
                | Q(redacted_at__isnull=True)
                | ~Q(memory_update=Message.MemoryUpdate.DONE)
            )
            .update(
                text="",
                speaker="",
                # Nothing of it is left to remember (async memory): a worker
                # that claimed it finds its claim gone and writes nothing.
                memory_update=Message.MemoryUpdate.DONE,
                memory_claimed_until=None,
                # A message redacted earlier keeps the time it was.
                redacted_at=Coalesce(
                    F("redacted_at"), Value(now, output_field=DateTimeField())
                ),
            )
        )
    return purged


def _is_memory_key(key: str) -> bool:
    """Whether a vector key is one we write (a memory's UUID)."""
    try:
        return str(uuid.UUID(key)) == key
    except ValueError:
        return False


def _delete_leftover_vectors(
    *, tenant: Tenant, user_id: str, batch_size: int, report: ForgetReport
) -> None:
    """Delete vectors still in the user's namespace without a live memory.

    The batches deleted every key the rows name; this catches what no row
    names any longer (an orphan from an old failure), so that the namespace
    ends empty. Memories that arrived while the forget ran are left alone: the
    verification reports them, and another run erases them.
    """
    store = get_vector_store()
    namespace = _namespace(tenant, user_id)
    listed = 0
    leftovers: list[str] = []
    chunk: list[str] = []

    def sort_chunk() -> None:
        live = {
            str(key)
            for key in Memory.objects.for_user(tenant, user_id)
            .with_vector_keys([key for key in chunk if _is_memory_key(key)])
            .exclude(status=Memory.Status.DELETED)
            .values_list("vector_key", flat=True)
        }
        leftovers.extend(key for key in chunk if key not in live)
        chunk.clear()

    # Listed in full before deleting: a store's listing may skip entries when
    # they are deleted while it pages.
    for key in store.list_keys(namespace=namespace):
        listed += 1
        chunk.append(key)
        if len(chunk) >= LOOKUP_CHUNK:
            sort_chunk()
    sort_chunk()
    for start in range(0, len(leftovers), batch_size):
        batch = leftovers[start : start + batch_size]
        store.delete(namespace=namespace, keys=batch)
        report.leftover_vectors_deleted += len(batch)
    report.vectors_listed_after = None if leftovers else listed


@dataclass(frozen=True)
class ErasureOutcome:
    """A user erased as forget_user erases one, and its verification."""

    report: ForgetReport
    remaining: UserDataRemaining


def user_data_erase(
    *, tenant: Tenant, user_id: str, progress: Progress | None = None
) -> ErasureOutcome:
    """Erase a user, compact the storage and count what remains (0 expected),
    as forget_user does for one user. Running it again is safe: a user already
    erased has nothing left to erase. `progress` hears of each batch of memories."""
    report = user_data_forget(tenant=tenant, user_id=user_id, progress=progress)
    remaining = user_data_remaining(
        tenant=tenant, user_id=user_id, vectors=report.vectors_listed_after
    )
    storage_compact()
    return ErasureOutcome(report=report, remaining=remaining)


# --- export --------------------------------------------------------------------
@dataclass(frozen=True)
class ExportCounts:
    """How many records an export wrote."""

    memories: int
    messages: int


def user_data_export_count(*, tenant: Tenant, user_id: str) -> int:
    """How many records an export of the user writes (memories and messages)."""
    return (
        Memory.objects.for_user(tenant, user_id).count()
        + Message.objects.for_user(tenant, user_id).count()
    )


def _time(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    text = moment.isoformat()
    return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text


# The id a record shows for a message row: the row's own for an operator's
# export, the public id (memories/public_ids.py) for the API's.
MessageIdOf = Callable[[int | None], int | None]


def _row_id(pk: int | None) -> int | None:
    return pk


def _memory_record(memory: Memory, message_id: MessageIdOf) -> dict:
    return {
        "id": str(memory.vector_key),
        "kind": memory.kind,
        "role": memory.role,
        "passage": memory.passage,
        "status": memory.status,
        "text": memory.text,
        "speaker": memory.speaker,
        "slot": memory.slot,
        "happenedAt": _time(memory.happened_at),
        "timeGranularity": memory.time_granularity,
        "createdAt": _time(memory.created_at),
        "updatedAt": _time(memory.updated_at),
        "sourceMessageId": message_id(memory.source_message_id),
        "sources": [
            {
                "messageId": message_id(message.pk),
                "clientMessageId": message.client_message_id,
                "sentAt": _time(message.sent_at),
            }
            for message in memory.sources.all()
        ],
        "history": [
            {
                "action": event.action,
                "oldText": event.old_text,
                "newText": event.new_text,
                "actor": event.actor,
                "reason": event.reason,
                "messageId": message_id(event.message_id),
                "validUntil": _time(event.valid_until),
                "createdAt": _time(event.created_at),
            }
            for event in memory.events.all()
        ],
    }


def _message_record(message: Message, message_id: MessageIdOf) -> dict:
    return {
        "id": message_id(message.pk),
        "kind": message.kind,
        "role": message.role,
        "speaker": message.speaker,
        "text": message.text,
        "clientMessageId": message.client_message_id,
        "sentAt": _time(message.sent_at),
        "createdAt": _time(message.created_at),
        "redactedAt": _time(message.redacted_at),
    }


def _memory_records(
    tenant: Tenant, user_id: str, message_id: MessageIdOf
) -> Iterator[dict]:
    memories = (
        Memory.objects.for_user(tenant, user_id)
        # Derived from texts the export holds anyway; the embedding alone is
        # 1.5 KB a memory.
        .defer("embedding", "context_text", "content_hash")
        .order_by("pk")
        .prefetch_related(
            Prefetch(
                "sources",
                queryset=Message.objects.only("pk", "client_message_id", "sent_at"),
            ),
            "events",
        )
    )
    # With chunk_size, the prefetches run once per chunk of rows.
    for memory in memories.iterator(chunk_size=EXPORT_CHUNK):
        yield _memory_record(memory, message_id)


def _message_records(
    tenant: Tenant, user_id: str, message_id: MessageIdOf
) -> Iterator[dict]:
    messages = Message.objects.for_user(tenant, user_id).order_by("sent_at", "pk")
    for message in messages.iterator(chunk_size=EXPORT_CHUNK):
        yield _message_record(message, message_id)


def _dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False)


def user_data_export(
    *,
    tenant: Tenant,
    user_id: str,
    write: Callable[[str], object],
    export_format: str = "json",
    progress: Progress | None = None,
    message_id: MessageIdOf = _row_id,
) -> ExportCounts:
    """Write everything stored about a user, record by record, through `write`.

    Nothing is gathered in memory: rows are read a chunk at a time and each
    record is written as soon as it is built.
    """
    chunks = user_data_export_chunks(
        tenant=tenant,
        user_id=user_id,
        export_format=export_format,
        progress=progress,
        message_id=message_id,
    )
    while True:
        try:
            write(next(chunks))
        except StopIteration as done:
            return done.value


def user_data_export_chunks(
    *,
    tenant: Tenant,
    user_id: str,
    export_format: str = "json",
    progress: Progress | None = None,
    message_id: MessageIdOf = _row_id,
) -> Generator[str, None, ExportCounts]:
    """The export as pieces of text, each yielded as soon as it is built (a
    streamed HTTP response sends them as they come); returns the counts.

    `message_id` maps a message row's id to the id the export shows.
    """
    if export_format not in EXPORT_FORMATS:
        raise ValueError(f"Unknown export format {export_format!r}.")
    progress = progress or _no_progress
    header = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "tenant": tenant.slug,
        "userId": user_id,
        "exportedAt": _time(timezone.now()),
    }
    sections = {
        # section name: (record type in JSON Lines, records)
        "memories": ("memory", _memory_records(tenant, user_id, message_id)),
        "messages": ("message", _message_records(tenant, user_id, message_id)),
    }
    written = dict.fromkeys(sections, 0)
    if export_format == "jsonl":
        yield _dumps({"type": "header", **header}) + "\n"
        for name, (record_type, records) in sections.items():
            for record in records:
                yield _dumps({"type": record_type, **record}) + "\n"
                written[name] += 1
                progress(1)
        # Its absence tells a consumer the file was cut short.
        yield _dumps({"type": "end", **written}) + "\n"
    else:
        fields = ", ".join(
            f"{_dumps(key)}: {_dumps(value)}" for key, value in header.items()
        )
        yield "{" + fields
        for name, (_, records) in sections.items():
            yield f",\n{_dumps(name)}: ["
            separator = "\n"
            for record in records:
                yield separator + _dumps(record)
                separator = ",\n"
                written[name] += 1
                progress(1)
            yield "\n]"
        yield "}\n"
    return ExportCounts(**written)
