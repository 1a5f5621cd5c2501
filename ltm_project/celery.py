"""The Celery app: background work on a broker (LTM_BROKER_URL), run by
`celery -A ltm_project worker`. Without a broker each task runs at once in the
process that asks for it, so the embedded default needs no broker or worker."""

import os
import time

from celery import Celery
from celery.signals import (
    before_task_publish,
    task_postrun,
    task_prerun,
    worker_init,
)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ltm_project.settings")

app = Celery("ltm")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# -- task metrics ----------------------------------------------------------
# A task's wait in the queue and its run, for Prometheus. The time it was sent
# travels in the message's headers; a worker serves its series on
# LTM_WORKER_METRICS_PORT (with PROMETHEUS_MULTIPROC_DIR, its pool's too).
ENQUEUED_AT = "ltm_enqueued_at"
_started: dict[str, float] = {}


@before_task_publish.connect(weak=False)
def _stamp(headers=None, **kwargs) -> None:
    if headers is not None:
        headers[ENQUEUED_AT] = time.time()


@task_prerun.connect(weak=False)
def _task_started(task_id=None, task=None, **kwargs) -> None:
    from memories.observability import task_wait

    _started[task_id] = time.perf_counter()
    enqueued = getattr(task.request, ENQUEUED_AT, None) or (
        (task.request.headers or {}).get(ENQUEUED_AT)
        if isinstance(task.request.headers, dict)
        else None
    )
    if enqueued:
        task_wait.labels(task.name).observe(max(time.time() - float(enqueued), 0.0))


@task_postrun.connect(weak=False)
def _task_finished(task_id=None, task=None, state=None, **kwargs) -> None:
    from memories.observability import task_duration

    started = _started.pop(task_id, None)
    if started is not None:
        task_duration.labels(task.name, state or "UNKNOWN").observe(
            time.perf_counter() - started
        )


@worker_init.connect(weak=False)
def _serve_worker_metrics(**kwargs) -> None:
    from django.conf import settings

    port = settings.LTM_WORKER_METRICS_PORT
    if not port:
        return
    from prometheus_client import (
        REGISTRY,
        CollectorRegistry,
        multiprocess,
        start_http_server,
    )

    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    start_http_server(
        int(port),
        addr=settings.LTM_WORKER_METRICS_ADDRESS,
        registry=registry,
    )
