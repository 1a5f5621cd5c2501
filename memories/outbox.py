"""The vector outbox: vector writes recorded with the rows, applied after commit.

Every change to a memory writes, in its transaction, an outbox entry
(`VectorOperation`). After the commit the entry is applied: the memory's vector
is put if the row is active and deleted if not, idempotent by key. No lock or
transaction is held while the store is called: the entries are claimed first,
then written, then marked. An entry left pending (the store failed, the process
died) is applied again later, after a backoff: by the relay task's retries and the
worker's sweep with a broker (memories/tasks.py), else a few at the start of
the tenant's next requests; sync_vectors applies the rest.
"""

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Q
from django.utils import timezone
from kombu.exceptions import OperationalError

from accounts.models import Tenant
from memories.models import Memory, VectorOperation
from memories.search.document import keyword_document
from memories.vectors import from_bytes
from memories.vectorstores import Namespace, VectorRecord, get_vector_store

logger = logging.getLogger(__name__)

_sync_batch: ContextVar[list[int] | None] = ContextVar("sync_batch", default=None)
# Outbox entries applied per vector-store round: two S3 Vectors batches of 500.
VECTOR_APPLY_CHUNK = 1000


def _apply_after_commit(operation_ids: list[int]) -> None:
    def relay() -> None:
        from memories.tasks import relay_vector_operations

        # In chunks: one transaction of row locks per chunk, however big the write.
        for start in range(0, len(operation_ids), VECTOR_APPLY_CHUNK):
            chunk = operation_ids[start : start + VECTOR_APPLY_CHUNK]
            try:
                relay_vector_operations.delay(chunk)
            except OperationalError as exc:
                logger.warning(
                    "The broker did not take %d vector operation(s) (%s); "
                    "applying them here.",
                    len(chunk),
                    exc,
                )
                vector_operations_apply(operation_ids=chunk, limit=len(chunk))

    transaction.on_commit(relay, robust=True)


@contextmanager
def vector_sync_batch() -> Iterator[None]:
    """Apply the outbox entries written inside the block in one go after commit
    (one batched write to the vector store instead of one per memory)."""
    if _sync_batch.get() is not None:
        # Nested in another batch: the entries go out with the outer batch's.
        yield
        return
    operation_ids: list[int] = []
    token = _sync_batch.set(operation_ids)
    try:
        yield
    finally:
        _sync_batch.reset(token)
    if operation_ids:
        _apply_after_commit(operation_ids)


def outbox_record(memory_ids: list[int], *, tenant_id: int) -> list[int]:
    """Record that these memories' vectors must follow their rows; applied after
    commit (with the enclosing batch's, if any). Returns the entries' ids."""
    if not memory_ids:
        return []
    operations = VectorOperation.objects.bulk_create(
        [VectorOperation(memory_id=pk, tenant_id=tenant_id) for pk in memory_ids]
    )
    operation_ids = [operation.pk for operation in operations]
    batch = _sync_batch.get()
    if batch is None:
        _apply_after_commit(operation_ids)
    else:
        batch.extend(operation_ids)
    return operation_ids


def _epoch_seconds(moment) -> int | None:
    return int(moment.timestamp()) if moment is not None else None


def vector_metadata(memory: Memory) -> dict:
    """What the index keeps beside a memory's vector.

    Times are epoch seconds so that stores can filter them by range; keys whose
    value is unknown are left out (S3 Vectors has no null).
    """
    metadata = {
        "memory_id": memory.pk,
        "tenant_id": memory.tenant_id,
        "user_id": memory.user_id,
        "kind": memory.kind,
        "role": memory.role,
        "speaker": memory.speaker,
        "slot": memory.slot,
        "text": memory.text,
        "keywords": keyword_document(memory),
        "content_hash": memory.content_hash,
        "embedding_model": memory.embedding_model,
        "happened_at": _epoch_seconds(memory.happened_at),
        "created_at": _epoch_seconds(memory.created_at),
    }
    return {key: value for key, value in metadata.items() if value not in (None, "")}


# A claim on outbox entries outlives any store call (their timeouts are far
# shorter); a process that dies holding one leaves it to expire.
CLAIM_SECONDS = 120
# Waits before an entry that failed is tried again, by attempts so far: the
# store is not hammered while it is down.
RETRY_BACKOFF_SECONDS = (1, 5, 15, 60, 300)


@dataclass
class _Claim:
    token: uuid.UUID
    memories: list[Memory]
    entries: int


def _claim(pending, limit: int) -> _Claim | None:
    """Claim pending entries and read their memories, in one short transaction
    with no network call inside.

    The memories are locked only for the claim (a writer holding one is skipped,
    never waited for); a memory whose entries another process has claimed is
    left to it, so two appliers never write one memory's vector out of order.
    All pending entries of a claimed memory are claimed with it: the state read
    now satisfies every one of them.
    """
    now = timezone.now()
    with transaction.atomic():
        candidates = list(
            pending.exclude(claimed_until__gt=now)
            .order_by("pk")
            .values_list("memory_id", flat=True)[:limit]
        )
        if not candidates:
            return None
        memories = list(
            Memory.objects.select_for_update(skip_locked=True).filter(
                pk__in=set(candidates)
            )
        )
        busy = set(
            VectorOperation.objects.filter(
                memory_id__in=[memory.pk for memory in memories],
                applied_at__isnull=True,
                claimed_until__gt=now,
            ).values_list("memory_id", flat=True)
        )
        memories = [memory for memory in memories if memory.pk not in busy]
        if not memories:
            return None
        token = uuid.uuid4()
        entries = VectorOperation.objects.filter(
            memory_id__in=[memory.pk for memory in memories], applied_at__isnull=True
        ).update(
            claim_token=token,
            claimed_until=now + timedelta(seconds=CLAIM_SECONDS),
        )
    return _Claim(token=token, memories=memories, entries=entries)


def _store_write(memories: list[Memory]) -> None:
    store = get_vector_store()
    puts: dict[Namespace, list[VectorRecord]] = {}
    deletes: dict[Namespace, list[str]] = {}
    for memory in memories:
        namespace = Namespace(tenant_id=memory.tenant_id, user_id=memory.user_id)
        if memory.is_active:
            puts.setdefault(namespace, []).append(
                VectorRecord(
                    key=str(memory.vector_key),
                    vector=from_bytes(memory.embedding),
                    metadata=vector_metadata(memory),
                )
            )
        else:
            deletes.setdefault(namespace, []).append(str(memory.vector_key))
    for namespace, records in puts.items():
        store.put(namespace=namespace, records=records)
    for namespace, keys in deletes.items():
        store.delete(namespace=namespace, keys=keys)
    if deletes:
        # A deleted vector's text must not stay in the store's journal.
        store.compact()


def backoff_seconds(attempts: int) -> int:
    return RETRY_BACKOFF_SECONDS[min(max(attempts, 1), len(RETRY_BACKOFF_SECONDS)) - 1]


def _release_failed(claim: _Claim, exc: Exception) -> None:
    now = timezone.now()
    entries = list(VectorOperation.objects.filter(claim_token=claim.token))
    for entry in entries:
        wait = backoff_seconds(entry.attempts + 1)
        entry.attempts += 1
        entry.last_error = str(exc)[:2000]
        entry.retry_after = now + timedelta(seconds=wait)
        entry.claim_token = None
        entry.claimed_until = None
    VectorOperation.objects.bulk_update(
        entries,
        ["attempts", "last_error", "retry_after", "claim_token", "claimed_until"],
    )
    attempts = max((entry.attempts for entry in entries), default=0)
    logger.warning(
        "%d vector operation(s) of %d memories left pending (attempt %d, next in "
        "%ss or more): %s",
        len(entries),
        len(claim.memories),
        attempts,
        backoff_seconds(attempts),
        exc,
    )


def vector_operations_apply(
    *,
    operation_ids: list[int] | None = None,
    tenant: Tenant | None = None,
    limit: int = 1000,
    due_only: bool = False,
) -> int:
    """Make the vector index match the rows named by pending outbox entries.

    Claim the entries and read their memories (one short transaction), write the
    store with no lock or transaction held, then mark the entries applied.
    Idempotent: each memory's vector is put or deleted by key. `due_only` skips
    entries still waiting after a failure. Returns how many entries were
    applied; failures stay pending, to be tried again after a backoff.
    """
    pending = VectorOperation.objects.filter(applied_at__isnull=True)
    if operation_ids is not None:
        pending = pending.filter(pk__in=operation_ids)
    if tenant is not None:
        pending = pending.filter(tenant=tenant)
    if due_only:
        pending = pending.filter(
            Q(retry_after__isnull=True) | Q(retry_after__lte=timezone.now())
        )
    applied = 0
    # A change made while the store was written got an entry the claim does not
    # cover, and which no other process could take meanwhile: it is applied
    # next, here, so nothing is left behind (a few rounds at most).
    for _ in range(3):
        claim = _claim(pending, limit)
        if claim is None:
            break
        try:
            _store_write(claim.memories)
        except Exception as exc:  # noqa: BLE001 - every failure leaves them pending
            _release_failed(claim, exc)
            break
        try:
            VectorOperation.objects.filter(claim_token=claim.token).update(
                applied_at=timezone.now(), claim_token=None, claimed_until=None
            )
        except DatabaseError as exc:
            # Written but not marked: they stay pending and are written again
            # (idempotently) later; the claim is given up rather than left to expire.
            logger.warning("Vector operations written but not marked: %s", exc)
            VectorOperation.objects.filter(claim_token=claim.token).update(
                claim_token=None, claimed_until=None
            )
            break
        applied += claim.entries
        memory_ids = [memory.pk for memory in claim.memories]
        pending = VectorOperation.objects.filter(
            memory_id__in=memory_ids, applied_at__isnull=True
        )
        if not pending.exists():
            break
    return applied


def vector_operations_retry(*, tenant: Tenant) -> int:
    """Without a broker, apply a few of a tenant's outbox entries left pending
    by an earlier failure, those whose backoff is over: a request never carries
    the backlog (sync_vectors and reconcile_vectors do). With one, the relay
    task retries and the sweep takes what it gave up."""
    if not settings.CELERY_TASK_ALWAYS_EAGER:
        return 0
    if not VectorOperation.objects.filter(
        tenant=tenant, applied_at__isnull=True
    ).exists():
        return 0
    return vector_operations_apply(
        tenant=tenant, limit=settings.LTM_OUTBOX_REQUEST_RETRIES, due_only=True
    )
