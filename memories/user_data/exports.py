"""Exports run as tasks: GET /api/v1/users/{userId}/export with `Prefer:
respond-async` answers 202 at once, a worker writes the file into the database
in parts (in the process itself without a broker), GET /api/v1/exports/{jobId}
tells how far it is, and .../download sends the file.

The file is a copy of the user's words, so it lives only as long as it may:
until LTM_EXPORT_RETENTION_SECONDS after it is made, until the client deletes
it, and never past a forget or an erasure of the user's data, which discards
it (state `discarded`) in the same transaction. An export still being written
when that happens is discarded too, and its worker throws its parts away at
the end instead of finishing it.
"""

import logging
from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Tenant
from memories.models import ExportJob, ExportPart
from memories.public_ids import public_message_id
from memories.user_data.core import user_data_export_chunks, user_data_export_count
from memories.writes import EXPORTS_LIVE as LIVE

logger = logging.getLogger(__name__)

# Characters of the file in one stored part: the file is never whole in memory.
PART_CHARS = 1 << 20


def export_job_start(*, tenant: Tenant, user_id: str) -> ExportJob:
    """Record an export and hand it to a worker once the record is committed."""
    from memories.tasks import export_user

    job = ExportJob.objects.create(
        tenant=tenant,
        user_id=user_id,
        records_total=user_data_export_count(tenant=tenant, user_id=user_id),
    )
    transaction.on_commit(lambda: export_user.delay(str(job.pk)))
    return job


def export_job_run(job_id: str) -> ExportJob | None:
    """Write the job's file part by part, saying how far it has come. Safe to
    run again: it starts over. Raises what the export raised (the task
    retries); the job says failed only when retries end."""
    started = ExportJob.objects.filter(
        pk=job_id, state__in=(ExportJob.State.QUEUED, ExportJob.State.RUNNING)
    ).update(
        state=ExportJob.State.RUNNING,
        started_at=timezone.now(),
        records_done=0,
        size_bytes=0,
    )
    job = ExportJob.objects.filter(pk=job_id).select_related("tenant").first()
    if not started or job is None:
        return job  # done, discarded or deleted meanwhile
    ExportPart.objects.filter(job=job).delete()
    done = 0

    def progress(count: int) -> None:
        nonlocal done
        done += count

    pending, size, number = [], 0, 0
    chunks = user_data_export_chunks(
        tenant=job.tenant,
        user_id=job.user_id,
        export_format=job.export_format,
        progress=progress,
        message_id=public_message_id,
    )
    for chunk in chunks:
        pending.append(chunk)
        size += len(chunk)
        if size >= PART_CHARS:
            number = _store_part(job, number, pending, done)
            pending, size = [], 0
    if pending:
        number = _store_part(job, number, pending, done)
    now = timezone.now()
    finished = ExportJob.objects.filter(
        pk=job.pk, state=ExportJob.State.RUNNING
    ).update(
        state=ExportJob.State.DONE,
        records_done=done,
        finished_at=now,
        expires_at=now + timedelta(seconds=settings.LTM_EXPORT_RETENTION_SECONDS),
    )
    if not finished:
        # Discarded while it was written: what it wrote may hold forgotten words.
        ExportPart.objects.filter(job=job).delete()
    job.refresh_from_db()
    return job


def _store_part(job: ExportJob, number: int, pieces: list[str], done: int) -> int:
    text = "".join(pieces)
    ExportPart.objects.create(job=job, number=number, text=text)
    job.size_bytes += len(text.encode("utf-8"))
    ExportJob.objects.filter(pk=job.pk, state=ExportJob.State.RUNNING).update(
        records_done=done, size_bytes=job.size_bytes
    )
    return number + 1


def export_job_failed(job_id: str, error: Exception) -> None:
    logger.error("Export %s failed: %s", job_id, error)
    ExportPart.objects.filter(job_id=job_id).delete()
    ExportJob.objects.filter(pk=job_id).exclude(state=ExportJob.State.DISCARDED).update(
        state=ExportJob.State.FAILED,
        error=str(error)[:1000],
        finished_at=timezone.now(),
    )


def export_file(job: ExportJob) -> Iterator[str]:
    """The file of a finished export, part by part: one part read at a time,
    so a large file is never whole in memory."""
    numbers = ExportPart.objects.filter(job=job).order_by("number")
    for number in numbers.values_list("number", flat=True):
        yield ExportPart.objects.get(job=job, number=number).text


def export_is_gone(job: ExportJob) -> bool:
    """Whether the job's file can no longer be had (expired, discarded, failed)."""
    if job.state == ExportJob.State.DONE and job.expires_at <= timezone.now():
        return True
    return job.state not in LIVE


def export_delete(job: ExportJob) -> None:
    """The client is done with the file: it goes now."""
    ExportPart.objects.filter(job=job).delete()
    ExportJob.objects.filter(pk=job.pk, state__in=LIVE).update(
        state=ExportJob.State.EXPIRED, finished_at=timezone.now()
    )
    job.refresh_from_db()


def exports_expire() -> int:
    """Delete the files of exports past their time; how many expired."""
    expired = ExportJob.objects.filter(
        state=ExportJob.State.DONE, expires_at__lte=timezone.now()
    )
    ExportPart.objects.filter(job__in=expired).delete()
    return expired.update(state=ExportJob.State.EXPIRED)
