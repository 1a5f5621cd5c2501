"""Two gunicorn worker processes writing memories at once, on the embedded defaults."""

import http.client
import io
import json
import sqlite3
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.servers import create_tenant, gunicorn, service_env

USERS = 4
MESSAGES_PER_USER = 15


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
    # SQLite whatever the test run uses: the test reads its files.
    env = service_env(tmp_path, f"sqlite:///{tmp_path / 'ltm.sqlite3'}")
    token = create_tenant(env)
    with gunicorn(env) as base:
        yield base, token, tmp_path


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
