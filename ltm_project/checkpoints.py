"""SQLite's WAL checkpoints off the requests' path.

SQLite copies its write-ahead log back into the database (a checkpoint) in the
connection whose commit makes the log cross `wal_autocheckpoint` pages. At
100,000 memories that commit took 100-180 ms every few dozen messages: the
pages it writes are scattered over the file, then synced. Each process that
opens the database instead runs a passive checkpoint (it never waits for, nor
blocks, a reader or a writer) from a thread of its own every
LTM_SQLITE_CHECKPOINT_SECONDS. The connections' own threshold stays, ten times
higher, as a backstop for a process that stops before its thread runs.
"""

import logging
import os
import sqlite3
import threading
import time

logger = logging.getLogger(__name__)

# The connections' own checkpoint threshold while a thread checkpoints (pages).
BACKSTOP_PAGES = 10_000

_lock = threading.Lock()
# The files this process checkpoints, and the process that started them: a
# forked child inherits the set but not the threads.
_checkpointed: set[str] = set()
_owner_pid = os.getpid()


def checkpoint_in_background(path: str, every: float) -> bool:
    """Checkpoint the database at `path` every `every` seconds from a thread
    of this process, once per process and file; False if one already does."""
    global _owner_pid
    with _lock:
        if _owner_pid != os.getpid():
            _checkpointed.clear()
            _owner_pid = os.getpid()
        if path in _checkpointed:
            return False
        _checkpointed.add(path)
    threading.Thread(
        target=_checkpoint_forever,
        args=(path, every),
        name="ltm-sqlite-checkpoint",
        daemon=True,
    ).start()
    return True


def checkpoint(path: str) -> None:
    """One passive checkpoint of the database at `path`, if it exists."""
    try:
        # mode=rw: a file removed meanwhile is not created again.
        connection = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=0)
    except sqlite3.Error:
        return
    try:
        # As the server's connections: a checkpoint then syncs the database.
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    except sqlite3.Error as exc:
        logger.debug("Checkpoint of %s skipped: %s", path, exc)
    finally:
        connection.close()


def _checkpoint_forever(path: str, every: float) -> None:
    while True:
        time.sleep(every)
        checkpoint(path)


def on_connection_created(sender, connection, **kwargs) -> None:
    """Django's connection_created: a file-backed SQLite database gets its
    checkpoints from this process's thread."""
    from django.conf import settings

    every = settings.LTM_SQLITE_CHECKPOINT_SECONDS
    if connection.vendor != "sqlite" or every <= 0 or connection.is_in_memory_db():
        return
    with connection.cursor() as cursor:
        cursor.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
    checkpoint_in_background(str(connection.settings_dict["NAME"]), every)
