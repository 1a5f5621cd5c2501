"""Erasures run as tasks: DELETE /api/v1/users/{userId} with
`Prefer: respond-async` answers 202 at once, a worker erases (in the process
itself without a broker), and GET /api/v1/erasures/{jobId} tells how far it is.
"""

import logging

from django.db import transaction
from django.utils import timezone

from accounts.models import Tenant
from memories.models import ErasureJob
from memories.user_data.core import (
    ErasureOutcome,
    user_data_erase,
    user_data_forget_count,
)

logger = logging.getLogger(__name__)


def erasure_answer(user_id: str, outcome: ErasureOutcome) -> dict:
    """What an erasure says of itself, in the API's shape."""
    from memories.serializers import UserErasureSerializer

    return UserErasureSerializer(
        {
            "user_id": user_id,
            "report": outcome.report,
            "remaining": outcome.remaining,
            "vectors_deleted": outcome.report.vector_deletes
            + outcome.report.leftover_vectors_deleted,
            "verified": not outcome.remaining.total,
        }
    ).data


def erasure_job_start(*, tenant: Tenant, user_id: str) -> ErasureJob:
    """Record an erasure and hand it to a worker once the record is committed."""
    from memories.tasks import erase_user

    job = ErasureJob.objects.create(
        tenant=tenant,
        user_id=user_id,
        memories_total=user_data_forget_count(tenant=tenant, user_id=user_id),
    )
    transaction.on_commit(lambda: erase_user.delay(str(job.pk)))
    return job


def erasure_job_run(job_id: str) -> ErasureJob | None:
    """Erase the job's user, saying how far it has come after each batch.
    Safe to run again: an erasure finds what is left. Raises what the erasure
    raised (the task retries); the job says failed only when retries end."""
    job = ErasureJob.objects.filter(pk=job_id).first()
    if job is None or job.state == ErasureJob.State.DONE:
        return job
    ErasureJob.objects.filter(pk=job.pk).update(
        state=ErasureJob.State.RUNNING, started_at=timezone.now(), memories_done=0
    )

    def progress(done: int) -> None:
        job.memories_done += done
        ErasureJob.objects.filter(pk=job.pk).update(memories_done=job.memories_done)

    job.memories_done = 0
    outcome = user_data_erase(tenant=job.tenant, user_id=job.user_id, progress=progress)
    answer = erasure_answer(job.user_id, outcome)
    if outcome.remaining.total:
        raise ErasureIncomplete(answer["remaining"])
    ErasureJob.objects.filter(pk=job.pk).update(
        state=ErasureJob.State.DONE, result=answer, finished_at=timezone.now()
    )
    job.refresh_from_db()
    return job


def erasure_job_failed(job_id: str, error: Exception) -> None:
    logger.error("Erasure %s failed: %s", job_id, error)
    ErasureJob.objects.filter(pk=job_id).update(
        state=ErasureJob.State.FAILED,
        error=str(error)[:2000],
        finished_at=timezone.now(),
    )


class ErasureIncomplete(Exception):
    """Data of the user remained after the erasure; it is run again."""
