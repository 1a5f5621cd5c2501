"""SQLite's WAL is checkpointed by a thread of each process, not by requests."""

import sqlite3
import time

import pytest
from django.db import connection

from ltm_project import checkpoints


def _write_into_the_log(path, rows: int) -> sqlite3.Connection:
    writer = sqlite3.connect(path)
    writer.execute("PRAGMA journal_mode=WAL")
    # As while the thread runs: the writer's own threshold is out of reach.
    writer.execute(f"PRAGMA wal_autocheckpoint={checkpoints.BACKSTOP_PAGES}")
    writer.execute("CREATE TABLE t (data BLOB)")
    writer.executemany(
        "INSERT INTO t VALUES (?)", [(bytes(3000),) for _ in range(rows)]
    )
    writer.commit()
    return writer


def test_the_thread_copies_the_log_into_the_database(tmp_path):
    path = tmp_path / "db.sqlite3"
    writer = _write_into_the_log(path, 1000)
    # Committed, the rows are in the log only.
    assert path.stat().st_size < 100_000

    assert checkpoints.checkpoint_in_background(str(path), 0.05)
    deadline = time.monotonic() + 10
    while path.stat().st_size < 3_000_000:
        assert time.monotonic() < deadline, "no checkpoint came"
        time.sleep(0.05)
    # One thread a file and process.
    assert not checkpoints.checkpoint_in_background(str(path), 0.05)
    assert writer.execute("SELECT count(*) FROM t").fetchone() == (1000,)
    writer.close()


def test_a_checkpoint_of_a_removed_file_creates_nothing(tmp_path):
    path = tmp_path / "gone.sqlite3"

    checkpoints.checkpoint(str(path))

    assert not path.exists()


@pytest.mark.django_db
def test_the_servers_connections_leave_checkpoints_to_the_thread():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_autocheckpoint")
        assert cursor.fetchone()[0] == checkpoints.BACKSTOP_PAGES
    assert str(connection.settings_dict["NAME"]) in checkpoints._checkpointed
