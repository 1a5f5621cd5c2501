"""The audit table and the vector index agree, whatever fails in between."""

import time
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from memories.models import Memory, Message, VectorOperation
from memories.vectorstores import VectorStoreError, use_vector_store
from tests.helpers import active_keys, post_forget, post_message, vector_keys

pytestmark = pytest.mark.django_db(transaction=True)


class FaultyStore:
    """Wraps the real store; fails the next N puts or deletes."""

    def __init__(self, inner):
        self.inner = inner
        self.failing_puts = 0
        self.failing_deletes = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def put(self, **kwargs):
        if self.failing_puts:
            self.failing_puts -= 1
            raise VectorStoreError("injected: put failed")
        return self.inner.put(**kwargs)

    def delete(self, **kwargs):
        if self.failing_deletes:
            self.failing_deletes -= 1
            raise VectorStoreError("injected: delete failed")
        return self.inner.delete(**kwargs)


@pytest.fixture
def faulty_store(vector_store):
    store = FaultyStore(vector_store)
    use_vector_store(store)
    return store


def test_a_failed_vector_write_is_kept_pending_and_applied_by_the_next_request(
    client_a, tenant_a, faulty_store
):
    faulty_store.failing_puts = 1
    response = post_message(client_a, "u1", "I am allergic to peanuts.")
    assert response.status_code == 200
    # The fact and the message's episode, both in the one failed put.
    pending = list(VectorOperation.objects.filter(applied_at__isnull=True))
    assert {operation.memory.kind for operation in pending} == {"fact", "episode"}
    assert len(pending) == 2
    for operation in pending:
        assert operation.attempts == 1
        assert "injected" in operation.last_error
    assert vector_keys(faulty_store, tenant_a) == set()

    post_message(client_a, "u1", "Hello again.")
    assert not VectorOperation.objects.filter(applied_at__isnull=True).exists()
    assert vector_keys(faulty_store, tenant_a) == active_keys()
    recalled = post_message(client_a, "u1", "What am I allergic to?").json()["recalled"]
    assert recalled[0]["text"] == "I am allergic to peanuts."


def test_sync_vectors_applies_what_was_left_pending(client_a, tenant_a, faulty_store):
    faulty_store.failing_puts = 1
    post_message(client_a, "u1", "I work as a baker and I live in Porto.")
    faulty_store.failing_puts = 1
    with pytest.raises(CommandError, match="could not be applied"):
        call_command("sync_vectors", stdout=StringIO())
    out = StringIO()
    call_command("sync_vectors", stdout=out)
    assert "0 still pending" in out.getvalue()
    assert vector_keys(faulty_store, tenant_a) == active_keys()
    # Two facts and the message's episode.
    assert len(active_keys()) == 3
    assert Memory.objects.filter(status="active", kind="fact").count() == 2


def test_a_failed_vector_delete_never_brings_the_memory_back(
    client_a, tenant_a, faulty_store
):
    post_message(client_a, "u1", "I am allergic to peanuts.")
    faulty_store.failing_deletes = 1
    forgotten = post_forget(client_a, "u1", "Forget that I am allergic to peanuts.")
    # The fact, and the episode of the message it came from.
    assert sorted(each["kind"] for each in forgotten.json()["forgotten"]) == [
        "episode",
        "fact",
    ]
    assert forgotten.json()["forgottenCount"] == 2
    # The vectors of the fact and of its message's episode are still there, but
    # the rows say deleted: they are never recalled.
    assert len(vector_keys(faulty_store, tenant_a)) == 2
    assert Memory.objects.filter(status="active").count() == 0
    recalled = post_message(client_a, "u1", "Am I allergic to peanuts?").json()[
        "recalled"
    ]
    assert recalled == []
    # The delete waits out its backoff (1 s after the first failure), then the
    # next request retries it; only the new messages' episodes are left.
    time.sleep(1.1)
    post_message(client_a, "u1", "What is the weather like?")
    assert vector_keys(faulty_store, tenant_a) == active_keys()
    assert set(
        Memory.objects.filter(status="active").values_list("kind", flat=True)
    ) == {"episode"}


@pytest.fixture
def failing_history_insert(db):
    """A database trigger that fails the insert of one memory's history row."""
    if connection.vendor == "sqlite":
        statements = [
            "CREATE TRIGGER fail_event BEFORE INSERT ON memories_memoryevent "
            "WHEN NEW.new_text LIKE '%violin%' "
            "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        ]
        drop = ["DROP TRIGGER fail_event"]
    else:
        statements = [
            "CREATE FUNCTION fail_event() RETURNS trigger AS $$ BEGIN "
            "IF NEW.new_text LIKE '%violin%' THEN RAISE EXCEPTION 'injected failure'; "
            "END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER fail_event BEFORE INSERT ON memories_memoryevent "
            "FOR EACH ROW EXECUTE FUNCTION fail_event()",
        ]
        drop = [
            "DROP TRIGGER fail_event ON memories_memoryevent",
            "DROP FUNCTION fail_event()",
        ]
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
    yield
    with connection.cursor() as cursor:
        for statement in drop:
            cursor.execute(statement)


@pytest.mark.usefixtures("failing_history_insert")
def test_a_database_failure_mid_write_leaves_neither_row_nor_vector(
    client_a, tenant_a, vector_store
):
    response = post_message(client_a, "u1", "I am a baker and I play the violin.")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "server_error"
    assert Message.objects.count() == 0
    assert Memory.objects.count() == 0
    assert VectorOperation.objects.count() == 0
    assert vector_keys(vector_store, tenant_a) == set()
