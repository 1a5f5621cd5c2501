"""The vector outbox: vector writes recorded with the rows, applied after commit.

Every change to a memory writes, in its transaction, an outbox entry
(`VectorOperation`). After the commit the entry is applied: the memory's vector
is put if the row is active and deleted if not, idempotent by key. An entry
left pending (the store failed, the process died) is applied again later.
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.db import transaction
from django.utils import timezone

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
    def apply() -> None:
        # In chunks: one transaction of row locks per chunk, however big the write.
        for start in range(0, len(operation_ids), VECTOR_APPLY_CHUNK):
            chunk = operation_ids[start : start + VECTOR_APPLY_CHUNK]
            vector_operations_apply(operation_ids=chunk, limit=len(chunk))

    transaction.on_commit(apply, robust=True)


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


def vector_operations_apply(
    *,
    operation_ids: list[int] | None = None,
    tenant: Tenant | None = None,
    limit: int = 1000,
) -> int:
    """Make the vector index match the rows named by pending outbox entries.

    Idempotent: each entry re-reads its memory and puts or deletes its vector by
    key. Returns how many entries were applied; failures stay pending.
    """
    pending = VectorOperation.objects.filter(applied_at__isnull=True)
    if operation_ids is not None:
        pending = pending.filter(pk__in=operation_ids)
    if tenant is not None:
        pending = pending.filter(tenant=tenant)
    operations = list(pending.order_by("pk").values_list("pk", "memory_id")[:limit])
    if not operations:
        return 0
    operation_pks = [pk for pk, _ in operations]
    store = get_vector_store()
    try:
        with transaction.atomic():
            # Holding the rows while the index is written keeps a concurrent
            # change to the same memory from being overtaken by this one. Rows
            # a writer holds are skipped, never waited for (a wait here, beside
            # the writer's own waits, deadlocks): the writer records a newer
            # entry for each, and the skipped entries stay pending.
            memories = list(
                Memory.objects.select_for_update(skip_locked=True).filter(
                    pk__in={memory_id for _, memory_id in operations}
                )
            )
            fetched = {memory.pk for memory in memories}
            puts: dict[Namespace, list[VectorRecord]] = {}
            deletes: dict[Namespace, list[str]] = {}
            for memory in memories:
                namespace = Namespace(
                    tenant_id=memory.tenant_id, user_id=memory.user_id
                )
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
            VectorOperation.objects.filter(
                pk__in=[pk for pk, memory_id in operations if memory_id in fetched]
            ).update(applied_at=timezone.now())
    except Exception as exc:
        logger.warning("Vector operations %s left pending: %s", operation_pks, exc)
        for operation in VectorOperation.objects.filter(pk__in=operation_pks):
            operation.attempts += 1
            operation.last_error = str(exc)[:2000]
            operation.save(update_fields=["attempts", "last_error"])
        return 0
    return len(operations)


def vector_operations_retry(*, tenant: Tenant) -> int:
    """Apply a tenant's outbox entries left pending by an earlier failure."""
    if not VectorOperation.objects.filter(
        tenant=tenant, applied_at__isnull=True
    ).exists():
        return 0
    return vector_operations_apply(tenant=tenant)
