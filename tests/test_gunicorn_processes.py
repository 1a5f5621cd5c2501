"""Two gunicorn worker processes writing memories at once, on the embedded defaults."""

import http.client
import io
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
        # Plain HTTP on 127.0.0.1: no TLS proxy in front to redirect to.
        "LTM_SSL_REDIRECT": "false",
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


def chunked_post(base: str, path: str, token: str, body: bytes) -> tuple[int, dict]:
    connection = http.client.HTTPConnection(base.removeprefix("http://"), timeout=60)
    pieces = [body[i : i + 1000] for i in range(0, len(body), 1000)]
    connection.request(
        "POST",
        path,
        body=iter(pieces),
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
        },
        encode_chunked=True,
    )
    response = connection.getresponse()
    return response.status, json.loads(response.read())


@pytest.mark.slow
def test_a_chunked_body_is_read_within_the_limits(server):
    base, token, _ = server
    said = "I keep bees on the roof of my building."
    status, answer = chunked_post(
        base,
        "/api/v1/message",
        token,
        json.dumps({"userId": "u1", "message": said}).encode(),
    )
    assert status == 200, answer
    assert [episode["text"] for episode in answer["episodes"]] == [said]
    too_big = json.dumps({"userId": "u1", "message": "x" * 600_000}).encode()
    status, answer = chunked_post(base, "/api/v1/message", token, too_big)
    assert (status, answer["error"]["code"]) == (413, "request_too_large")


def test_a_server_that_cannot_decode_chunks_answers_411():
    from ltm_project.chunked import ChunkedBodies

    def never_called(environ, start_response):  # pragma: no cover - must not run
        raise AssertionError("the application saw an unreadable body")

    answered = {}
    body = ChunkedBodies(never_called)(
        {"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input": io.BytesIO(b"5\r\nhello")},
        lambda status, headers: answered.update(status=status, headers=dict(headers)),
    )
    assert answered["status"].startswith("411")
    assert answered["headers"]["Content-Type"] == "application/json"
    assert json.loads(b"".join(body))["error"]["code"] == "length_required"
