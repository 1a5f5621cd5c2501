# Tracing first, before Django opens a database connection (a no-op unless
# OTEL_EXPORTER_OTLP_ENDPOINT is set); then the Celery app, loaded with Django
# so that tasks find it (`shared_task`).
from ltm_project.tracing import configure_tracing

configure_tracing()

from ltm_project.celery import app as celery_app  # noqa: E402

__all__ = ("celery_app",)
