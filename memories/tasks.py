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
    if applied >= len(operation_ids) or self.request.is_eager:
        # All written; or in process (no broker), where the tenant's next
        # requests retry, and a request need not read its entries again.
        return applied
    left = VectorOperation.objects.filter(pk__in=operation_ids, applied_at__isnull=True)
    attempts = max(left.values_list("attempts", flat=True), default=None)
    if attempts is not None:
        raise self.retry(countdown=backoff_seconds(attempts))
    return applied


@shared_task(acks_late=True)
def sweep_vector_operations() -> int:
    """Outbox entries whose relay gave up or never ran, once their backoff is over."""
    return vector_operations_apply(due_only=True)


# Waits, in seconds, while a user's earlier message is still being remembered.
ORDER_WAIT_SECONDS = 1
ORDER_WAITS = 600


@shared_task(bind=True, max_retries=ORDER_WAITS, acks_late=True)
def remember_message(self, message_id: int) -> str:
    """Async memory: remember a message, after its user's earlier ones."""
    from memories.pipeline.pending import Remembering, remember_pending

    outcome = remember_pending(message_id)
    if outcome is Remembering.BUSY:
        # Another worker holds an earlier message of this user (or this one):
        # this one waits its turn; a claim a dead worker left expires.
        raise self.retry(countdown=ORDER_WAIT_SECONDS)
    return outcome.value


@shared_task(acks_late=True)
def sweep_pending_messages() -> int:
    """Messages still pending a while after they came (their task was lost,
    or the broker did not take it), handed to a worker again."""
    from datetime import timedelta

    from django.db.models import Q
    from django.utils import timezone

    from memories.models import Message

    now = timezone.now()
    stale = Message.objects.filter(
        Q(
            memory_update=Message.MemoryUpdate.PENDING,
            created_at__lt=now - timedelta(minutes=1),
        )
        | Q(memory_update=Message.MemoryUpdate.WORKING, memory_claimed_until__lt=now)
    ).values_list("pk", flat=True)[:1000]
    for message_id in stale:
        remember_message.delay(message_id)
    return len(stale)


# Tries of an erasure or an export (a store that fails, data left behind)
# before its job is failed.
JOB_RETRIES = 5


def _job_task(task, job_id: str, run, failed) -> str:
    """Run a job's work, retried with backoff; its state, or "gone"."""
    try:
        job = run(job_id)
    except Exception as exc:
        if task.request.is_eager or task.request.retries >= JOB_RETRIES:
            failed(job_id, exc)
            return "failed"
        raise task.retry(
            exc=exc, countdown=backoff_seconds(task.request.retries + 1)
        ) from exc
    return job.state if job else "gone"


@shared_task(bind=True, max_retries=JOB_RETRIES, acks_late=True)
def erase_user(self, job_id: str) -> str:
    """Erase an end user for a job (DELETE /api/v1/users/{userId}, async)."""
    from memories.user_data.jobs import erasure_job_failed, erasure_job_run

    return _job_task(self, job_id, erasure_job_run, erasure_job_failed)


@shared_task(bind=True, max_retries=JOB_RETRIES, acks_late=True)
def export_user(self, job_id: str) -> str:
    """Write an end user's export for a job (GET /api/v1/users/{userId}/export,
    async)."""
    from memories.user_data.exports import export_job_failed, export_job_run

    return _job_task(self, job_id, export_job_run, export_job_failed)


@shared_task
def sweep_exports() -> int:
    """Delete the files of exports past LTM_EXPORT_RETENTION_SECONDS."""
    from memories.user_data.exports import exports_expire

    return exports_expire()
