"""gunicorn's settings for LTM, read from the working directory at start.

Only what the service needs of the server; the command line gives the rest
(`gunicorn ltm_project.wsgi --workers 4 --bind 0.0.0.0:8000 --timeout 60`).
"""

import os
import shutil
from pathlib import Path


def on_starting(server):
    # Series of an earlier run's workers would be summed into this one's.
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
        Path(directory).mkdir(parents=True, exist_ok=True)


def child_exit(server, worker):
    # A dead worker's gauges are dropped; its counters still count.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
