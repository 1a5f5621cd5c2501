"""A vector store that stalls or fails while writes go on: no lock is held
across its calls, every answer is JSON, and afterwards nothing differs."""

import threading
import time
from io import StringIO

import pytest
import requests
from django.core.management import call_command

from accounts.services import token_issue
from memories.models import VectorOperation
from memories.vectorstores import VectorStoreError, use_vector_store
from tests.helpers import active_keys, vector_keys

pytestmark = pytest.mark.django_db(transaction=True)


class StallingStore:
    """Wraps the real store. The next `stalling` writes block until released
    (or give up after `stall_seconds`, as a client timeout would); while
    `failing`, a write fails at once. Counts the records each write carries."""

    def __init__(self, inner, stall_seconds: float = 20.0):
        self.inner = inner
        self.stall_seconds = stall_seconds
        self.stalling = 0
        self.released = threading.Event()
        self.failing = False
        self.blocked = threading.Event()  # a write is waiting in the stall
        self.write_sizes: list[int] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def _gate(self, size: int) -> None:
        self.write_sizes.append(size)
        if self.failing:
            raise VectorStoreError("injected: the store is down")
        if self.stalling:
            self.stalling -= 1
            self.blocked.set()
            if not self.released.wait(self.stall_seconds):
                raise VectorStoreError("injected: the store timed out")

    def put(self, *, namespace, records):
        self._gate(len(records))
        return self.inner.put(namespace=namespace, records=records)

    def delete(self, *, namespace, keys):
        self._gate(len(keys))
        return self.inner.delete(namespace=namespace, keys=keys)


@pytest.fixture
def store(vector_store):
    stalling = StallingStore(vector_store)
    use_vector_store(stalling)
    return stalling


def _post(base, token, path, body):
    response = requests.post(
        f"{base}{path}",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert response.headers["Content-Type"].startswith("application/json")
    assert "database is locked" not in response.text
    return response


def test_a_stalled_store_holds_no_lock_and_the_backlog_is_repaired(
    live_server, tenant_a, store
):
    token = token_issue(tenant=tenant_a).secret
    base = live_server.url
    store.stalling = 1
    first: list = []
    stalled_writer = threading.Thread(
        target=lambda: first.append(
            _post(
                base,
                token,
                "/api/v1/message",
                {"userId": "a", "message": "I keep bees."},
            )
        )
    )
    stalled_writer.start()
    assert store.blocked.wait(30), "the first write never reached the store"
    # While that write waits on the store, other users' writes go through:
    # nothing holds the database across the call.
    for index in range(3):
        response = _post(
            base,
            token,
            "/api/v1/message",
            {"userId": f"b{index}", "message": f"I own {index + 2} bikes."},
        )
        assert response.status_code == 200, response.text
    assert stalled_writer.is_alive()
    store.released.set()
    stalled_writer.join(60)
    assert first[0].status_code == 200, first[0].text

    # The store is down for a while: every answer is still JSON, the rows are
    # kept, and each request carries its own vectors and at most a few retries,
    # never the backlog.
    store.failing = True
    store.write_sizes.clear()
    for index in range(8):
        response = _post(
            base,
            token,
            "/api/v1/message",
            {"userId": "c", "message": f"I planted {index + 3} tulips today."},
        )
        assert response.status_code == 200, response.text
        search = _post(
            base, token, "/api/v1/memories/search", {"userId": "c", "query": "tulips"}
        )
        assert search.status_code == 200
    assert max(store.write_sizes) <= 20
    assert VectorOperation.objects.filter(applied_at__isnull=True).exists()

    # Recovered: the commands leave nothing to repair.
    store.failing = False
    time.sleep(1.1)  # the first retry's backoff
    call_command("sync_vectors", stdout=StringIO())
    call_command("reconcile_vectors", "--fix", "--no-progress", stdout=StringIO())
    call_command("reconcile_vectors", "--no-progress", stdout=StringIO())  # clean
    assert not VectorOperation.objects.filter(applied_at__isnull=True).exists()
    for user_id in ("a", "b0", "b1", "b2", "c"):
        assert (
            vector_keys(store.inner, tenant_a, user_id) == active_keys(user_id) != set()
        )


def test_a_search_the_store_cannot_answer_is_503_json(client_a, store):
    def fail(**kwargs):
        raise VectorStoreError("injected: the store timed out")

    store.query = fail
    response = client_a.post(
        "/api/v1/memories/search", {"userId": "u1", "query": "bees"}, format="json"
    )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "provider_unavailable"
