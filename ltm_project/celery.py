"""The Celery app: background work on a broker (LTM_BROKER_URL), run by
`celery -A ltm_project worker`. Without a broker each task runs at once in the
process that asks for it, so the embedded default needs no broker or worker."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ltm_project.settings")

app = Celery("ltm")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
