# The Celery app loads with Django, so tasks find it (`shared_task`).
from ltm_project.celery import app as celery_app

__all__ = ("celery_app",)
