"""Two gunicorn worker processes writing memories at once, on the embedded defaults."""

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
USERS = 4
MESSAGES_PER_USER = 15


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def manage(env: dict, *args: str) -> str:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout


def post(url: str, token: str, body: dict) -> dict:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


@pytest.fixture
def server(tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'ltm.sqlite3'}",
        "LTM_DATA_DIR": str(tmp_path),
        "LTM_SECRET_KEY": "test-only",
        "LTM_ALLOWED_HOSTS": "127.0.0.1",
        "LTM_DEBUG": "false",
        "DJANGO_SETTINGS_MODULE": "ltm_project.settings",
    }
    manage(env, "migrate", "--verbosity", "0")
    token = manage(env, "create_tenant", "acme").strip().splitlines()[-1]
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "ltm_project.wsgi",
            "--workers",
            "2",
            "--bind",
            f"127.0.0.1:{port}",
            "--timeout",
            "120",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/schema/", timeout=5)  # noqa: S310
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.3)
        yield base, token, tmp_path
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.slow
def test_two_worker_processes_write_at_once_without_losing_anything(server):
    base, token, data_dir = server

    def tell(job):
        user, index = job
        return post(
            f"{base}/api/v1/message",
            token,
            {
                "userId": f"user-{user}",
                "message": f"I own a bicycle with number {index}.",
            },
        )

    jobs = [
        (user, index) for user in range(USERS) for index in range(MESSAGES_PER_USER)
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(tell, jobs))
    # Facts and the episodes of the messages: every memory the responses report.
    added = [
        memory["id"]
        for result in results
        for memory in result["added"] + result["episodes"]
    ]
    assert len(added) == len(set(added))

    database = sqlite3.connect(data_dir / "ltm.sqlite3")
    rows = set(
        database.execute(
            "SELECT vector_key FROM memories_memory WHERE status = 'active'"
        )
    )
    pending = database.execute(
        "SELECT COUNT(*) FROM memories_vectoroperation WHERE applied_at IS NULL"
    ).fetchone()[0]
    vectors = set(
        sqlite3.connect(data_dir / "vectors.sqlite3").execute("SELECT key FROM vectors")
    )
    assert pending == 0
    assert len(rows) == len(added)
    assert {key.replace("-", "") for (key,) in vectors} == {key for (key,) in rows}
    assert database.execute("SELECT COUNT(*) FROM memories_message").fetchone()[
        0
    ] == len(jobs)
