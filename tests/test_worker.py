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

from tests.servers import ROOT, create_tenant, fresh_database, gunicorn, service_env
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
def celery_worker(env: dict, log_path):
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
                "solo",
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


@pytest.fixture
def service(tmp_path, broker):
    with fresh_database(tmp_path) as database:
        env = service_env(
            tmp_path,
            database,
            LTM_BROKER_URL=broker,
            # A queue of this test's own: nothing left by another run is taken.
            LTM_TASK_QUEUE=f"ltm-test-{secrets.token_hex(4)}",
        )
        token = create_tenant(env)
        with gunicorn(env, workers=1) as base:
            yield env, base, token


@BROKERS
def test_the_vector_relay_runs_in_the_worker_after_commit(service, tmp_path):
    env, base, token = service
    said = {"userId": "u1", "message": "I keep bees on the roof in Porto."}

    assert call(base, "/api/v1/message", token, said)["episodes"]
    # No worker yet: the rows are committed, their vectors wait in the queue.
    time.sleep(1)
    assert outbox_pending(base) >= 1

    with celery_worker(env, tmp_path / "worker.log"):
        wait_for(lambda: outbox_pending(base) == 0)

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
