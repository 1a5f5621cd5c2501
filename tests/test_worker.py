"""Background work on a real broker: gunicorn, a Celery worker and the Redis of
LTM_TEST_REDIS_URL, on the run's kind of database."""

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager

import pytest

from tests.servers import (
    ROOT,
    create_tenant,
    free_port,
    fresh_database,
    gunicorn,
    service_env,
)
from tests.test_metrics import samples, value

REDIS_URL = os.environ.get("LTM_TEST_REDIS_URL", "")
RABBITMQ_URL = os.environ.get("LTM_TEST_RABBITMQ_URL", "")
pytestmark = pytest.mark.slow
BROKERS = pytest.mark.parametrize(
    "broker",
    [
        pytest.param(
            REDIS_URL,
            id="redis",
            marks=pytest.mark.skipif(not REDIS_URL, reason="set LTM_TEST_REDIS_URL"),
        ),
        pytest.param(
            RABBITMQ_URL,
            id="rabbitmq",
            marks=pytest.mark.skipif(
                not RABBITMQ_URL, reason="set LTM_TEST_RABBITMQ_URL"
            ),
        ),
    ],
)


@contextmanager
def celery_worker(env: dict, log_path, *, concurrency: int = 1):
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "ltm_project",
                "worker",
                "--pool",
                "solo" if concurrency == 1 else "prefork",
                "--concurrency",
                str(concurrency),
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "INFO",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
        )
        try:
            yield process
        finally:
            process.terminate()
            process.wait(timeout=30)


def call(base: str, path: str, token: str | None = None, body: dict | None = None):
    request = urllib.request.Request(
        f"{base}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"}
        | ({"Authorization": f"Bearer {token}"} if token else {}),
    )
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        raw = response.read().decode()
        return json.loads(raw) if raw.startswith("{") else raw


def outbox_pending(base: str) -> float:
    return value(samples(call(base, "/metrics")), "ltm_outbox_pending")


def wait_for(condition, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@contextmanager
def brokered_service(tmp_path, broker: str, *, workers: int = 1, **settings: str):
    """gunicorn on a fresh database with a tenant, sending tasks to `broker`;
    (its environment, base URL, token). No worker runs until a test starts one."""
    with fresh_database(tmp_path) as database:
        env = service_env(
            tmp_path,
            database,
            LTM_BROKER_URL=broker,
            # A queue of this test's own: nothing left by another run is taken.
            LTM_TASK_QUEUE=f"ltm-test-{secrets.token_hex(4)}",
            **settings,
        )
        token = create_tenant(env)
        with gunicorn(env, workers=workers) as base:
            yield env, base, token


@pytest.fixture
def service(tmp_path, broker):
    with brokered_service(tmp_path, broker) as running:
        yield running


@BROKERS
def test_the_vector_relay_runs_in_the_worker_after_commit(service, tmp_path):
    env, base, token = service
    said = {"userId": "u1", "message": "I keep bees on the roof in Porto."}

    assert call(base, "/api/v1/message", token, said)["episodes"]
    # No worker yet: the rows are committed, their vectors wait in the queue.
    time.sleep(1)
    assert outbox_pending(base) >= 1
    queue = {"queue": env["LTM_TASK_QUEUE"]}
    assert value(samples(call(base, "/metrics")), "ltm_task_queue_depth", **queue) == 1

    port = free_port()
    env = {**env, "LTM_WORKER_METRICS_PORT": str(port)}
    with celery_worker(env, tmp_path / "worker.log"):
        wait_for(lambda: outbox_pending(base) == 0)
        worker_series = samples(
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10)  # noqa: S310
            .read()
            .decode()
        )
    assert value(samples(call(base, "/metrics")), "ltm_task_queue_depth", **queue) == 0
    relay = "memories.tasks.relay_vector_operations"
    assert value(worker_series, "ltm_task_wait_seconds_count", task=relay) == 1
    assert (
        value(
            worker_series,
            "ltm_task_duration_seconds_count",
            task=relay,
            state="SUCCESS",
        )
        == 1
    )

    found = call(
        base, "/api/v1/memories/search", token, {"userId": "u1", "query": "bees"}
    )
    assert any(hit["vectorRank"] for hit in found["hits"]), found


def test_a_request_does_the_relay_itself_when_the_broker_is_down(tmp_path):
    with fresh_database(tmp_path) as database:
        # Nothing listens on port 9.
        env = service_env(tmp_path, database, LTM_BROKER_URL="redis://127.0.0.1:9/0")
        token = create_tenant(env)
        with gunicorn(env, workers=1) as base:
            started = time.monotonic()
            answer = call(
                base,
                "/api/v1/message",
                token,
                {"userId": "u1", "message": "I keep bees on the roof."},
            )
            took = time.monotonic() - started
            assert answer["episodes"]
            assert outbox_pending(base) == 0
    assert took < 10


def async_service(tmp_path):
    return brokered_service(tmp_path, REDIS_URL, workers=2, LTM_MEMORY_MODE="async")


def facts_recalled(base: str, token: str, question: str) -> list[str]:
    answer = call(base, "/api/v1/message", token, {"userId": "u1", "message": question})
    return [hit["text"] for hit in answer["recalled"] if hit["kind"] == "fact"]


def memory_update(base: str, token: str, message_id: int) -> str:
    return call(base, f"/api/v1/messages/{message_id}", token)["memoryUpdate"]


@pytest.mark.skipif(not REDIS_URL, reason="set LTM_TEST_REDIS_URL")
def test_async_memory_answers_first_and_workers_remember_each_users_messages_in_order(
    tmp_path,
):
    said = ["I live in Porto.", "I moved to Lisbon last month.", "I moved to Madrid."]
    with async_service(tmp_path) as (env, base, token):
        answers = [
            call(base, "/api/v1/message", token, {"userId": "u1", "message": text})
            for text in said
        ]
        # Answered before anything was remembered: no worker runs yet.
        for answer in answers:
            assert answer["reply"]
            assert answer["memoryUpdate"] == "pending"
            assert answer["added"] == answer["episodes"] == []
        assert memory_update(base, token, answers[-1]["messageId"]) == "pending"

        # Two worker processes take the three tasks at once; each user's
        # messages are still remembered one after the other, in order.
        with celery_worker(env, tmp_path / "worker.log", concurrency=2):
            wait_for(
                lambda: all(
                    memory_update(base, token, answer["messageId"]) == "done"
                    for answer in answers
                )
            )
        status = call(base, f"/api/v1/messages/{answers[0]['messageId']}", token)
        assert [memory["kind"] for memory in status["memories"]] == ["episode"]
        # A later message sees the updates: one home, the last said.
        assert facts_recalled(base, token, "Where do I live?") == ["I moved to Madrid."]


@pytest.mark.skipif(not REDIS_URL, reason="set LTM_TEST_REDIS_URL")
def test_a_forget_request_first_remembers_what_the_user_said_before_it(tmp_path):
    with async_service(tmp_path) as (env, base, token):
        told = call(
            base,
            "/api/v1/message",
            token,
            {"userId": "u1", "message": "I live in Porto."},
        )
        assert told["memoryUpdate"] == "pending"

        forgot = call(
            base,
            "/api/v1/forget",
            token,
            {"userId": "u1", "message": "Forget where I live."},
        )

        assert forgot["forgotten"], forgot
        assert memory_update(base, token, told["messageId"]) == "done"
        # The task the broker still holds finds nothing left to remember.
        with celery_worker(env, tmp_path / "worker.log"):
            time.sleep(3)
        found = call(
            base, "/api/v1/memories/search", token, {"userId": "u1", "query": "Porto"}
        )
        assert [hit for hit in found["hits"] if hit["kind"] == "fact"] == []


@pytest.mark.skipif(not REDIS_URL, reason="set LTM_TEST_REDIS_URL")
def test_an_async_erasure_waits_for_a_worker_and_says_when_it_is_done(tmp_path):
    with brokered_service(tmp_path, REDIS_URL) as (env, base, token):
        for text in ("I am allergic to peanuts.", "I live in Porto."):
            call(base, "/api/v1/message", token, {"userId": "u1", "message": text})
        request = urllib.request.Request(
            f"{base}/api/v1/users/u1",
            method="DELETE",
            headers={"Authorization": f"Bearer {token}", "Prefer": "respond-async"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            assert response.status == 202
            location = response.headers["Location"]
            job = json.loads(response.read())
        assert job["state"] == "queued"
        assert call(base, location, token)["state"] == "queued"

        with celery_worker(env, tmp_path / "worker.log"):
            wait_for(lambda: call(base, location, token)["state"] == "done")

        done = call(base, location, token)
        assert done["memoriesDone"] == done["memoriesTotal"] == 4
        assert done["result"]["verified"] is True
        found = call(
            base,
            "/api/v1/memories/search",
            token,
            {"userId": "u1", "query": "peanuts"},
        )
        assert found["hits"] == []


@pytest.mark.skipif(not REDIS_URL, reason="set LTM_TEST_REDIS_URL")
def test_an_async_export_is_written_by_a_worker_and_downloaded(tmp_path):
    with brokered_service(tmp_path, REDIS_URL) as (env, base, token):
        for text in ("I am allergic to peanuts.", "I live in Porto."):
            call(base, "/api/v1/message", token, {"userId": "u1", "message": text})
        request = urllib.request.Request(
            f"{base}/api/v1/users/u1/export",
            headers={"Authorization": f"Bearer {token}", "Prefer": "respond-async"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            assert response.status == 202
            location = response.headers["Location"]
        assert call(base, location, token)["state"] == "queued"

        with celery_worker(env, tmp_path / "worker.log"):
            wait_for(lambda: call(base, location, token)["state"] == "done")

        done = call(base, location, token)
        assert done["recordsDone"] == done["recordsTotal"] == 6
        exported = call(base, done["download"], token)
        assert exported["userId"] == "u1"
        assert [message["text"] for message in exported["messages"]] == [
            "I am allergic to peanuts.",
            "I live in Porto.",
        ]
        # Erasing the user discards the file at once; no worker needed.
        erase = urllib.request.Request(
            f"{base}/api/v1/users/u1",
            method="DELETE",
            headers={"Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(erase, timeout=60) as response:  # noqa: S310
            assert json.loads(response.read())["remaining"]["exportFiles"] == 0
        assert call(base, location, token)["state"] == "discarded"
