"""Background work (ltm_project/celery.py): with a broker, in a worker; without
one, at once in the process that asks."""

from celery import shared_task

from memories.models import VectorOperation
from memories.outbox import backoff_seconds, vector_operations_apply

# Tries of a relay before its entries are left to the sweep and sync_vectors.
RELAY_RETRIES = 5


@shared_task(bind=True, max_retries=RELAY_RETRIES, acks_late=True)
def relay_vector_operations(self, operation_ids: list[int]) -> int:
    """Write these outbox entries' vectors; retried with backoff while the
    store fails. Idempotent: each memory's vector is put or deleted by key."""
    applied = vector_operations_apply(
        operation_ids=operation_ids, limit=len(operation_ids)
    )
    left = VectorOperation.objects.filter(pk__in=operation_ids, applied_at__isnull=True)
    attempts = max(left.values_list("attempts", flat=True), default=None)
    if attempts is not None and not self.request.is_eager:
        # In process (no broker) the tenant's next requests retry instead.
        raise self.retry(countdown=backoff_seconds(attempts))
    return applied


@shared_task(acks_late=True)
def sweep_vector_operations() -> int:
    """Outbox entries whose relay gave up or never ran, once their backoff is over."""
    return vector_operations_apply(due_only=True)
