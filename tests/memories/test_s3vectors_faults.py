"""Faults between the audit table and S3 Vectors: every one ends consistent.

After `sync_vectors` and `reconcile_vectors --fix`, no vector lacks an active row,
no active row lacks its vector, and no memory is lost.
"""

import socket
import threading
import time
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from memories.models import Memory, VectorOperation
from memories.providers.embeddings import get_embedder
from memories.vectorstores import reset_vector_store
from tests.fakes.s3vectors import fake_s3vectors
from tests.helpers import post_forget, post_message

BUCKET = "ltm-faults"


@pytest.fixture
def s3(settings):
    with fake_s3vectors() as fake:
        fake.client().create_vector_bucket(vectorBucketName=BUCKET)
        settings.LTM_VECTOR_STORE = "s3vectors"
        settings.LTM_S3VECTORS_BUCKET = BUCKET
        settings.LTM_S3VECTORS_REGION = "us-east-1"
        # Two attempts per call: a fault injected twice fails the call.
        settings.LTM_S3VECTORS_MAX_ATTEMPTS = 2
        reset_vector_store()
        yield fake
        reset_vector_store()


def index_keys(s3, tenant) -> set[str]:
    keys, params = set(), {}
    while True:
        response = s3.client().list_vectors(
            vectorBucketName=BUCKET, indexName=f"ltm-t{tenant.pk}", **params
        )
        keys |= {vector["key"].split("/", 1)[1] for vector in response["vectors"]}
        if not response.get("nextToken"):
            return keys
        params = {"nextToken": response["nextToken"]}


def active_keys(tenant) -> set[str]:
    return {
        str(key)
        for key in Memory.objects.filter(tenant=tenant, status="active").values_list(
            "vector_key", flat=True
        )
    }


def repair_and_check(s3, tenant) -> None:
    call_command("sync_vectors", stdout=StringIO())
    call_command("reconcile_vectors", "--fix", "--no-progress", stdout=StringIO())
    out = StringIO()
    call_command("reconcile_vectors", "--no-progress", stdout=out)  # exit 0: clean
    assert index_keys(s3, tenant) == active_keys(tenant)
    assert not VectorOperation.objects.filter(applied_at__isnull=True).exists()


@pytest.mark.django_db(transaction=True)
def test_commit_then_put_fails(s3, client_a, tenant_a):
    s3.fail_next("PutVectors", times=2)

    response = post_message(client_a, "u1", "I play the violin and I live in Porto.")

    assert response.status_code == 200
    # Two facts and the message's episode.
    assert len(active_keys(tenant_a)) == 3
    assert index_keys(s3, tenant_a) == set()
    with pytest.raises(CommandError):
        call_command("reconcile_vectors", "--no-progress", stdout=StringIO())
    repair_and_check(s3, tenant_a)
    assert len(active_keys(tenant_a)) == 3


@pytest.fixture
def failing_outbox_mark(db):
    """The database refuses to mark an outbox entry applied (after the put)."""
    if connection.vendor == "sqlite":
        create = [
            "CREATE TRIGGER fail_mark BEFORE UPDATE ON memories_vectoroperation "
            "WHEN NEW.applied_at IS NOT NULL "
            "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        ]
        drop = ["DROP TRIGGER fail_mark"]
    else:
        create = [
            "CREATE FUNCTION fail_mark() RETURNS trigger AS $$ BEGIN "
            "IF NEW.applied_at IS NOT NULL THEN RAISE EXCEPTION 'injected failure'; "
            "END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER fail_mark BEFORE UPDATE ON memories_vectoroperation "
            "FOR EACH ROW EXECUTE FUNCTION fail_mark()",
        ]
        drop = [
            "DROP TRIGGER fail_mark ON memories_vectoroperation",
            "DROP FUNCTION fail_mark()",
        ]
    with connection.cursor() as cursor:
        for statement in create:
            cursor.execute(statement)

    def heal() -> None:
        with connection.cursor() as cursor:
            for statement in drop:
                cursor.execute(statement)

    return heal


@pytest.mark.django_db(transaction=True)
def test_put_succeeds_then_the_commit_fails(
    s3, client_a, tenant_a, failing_outbox_mark
):
    response = post_message(client_a, "u1", "I play the violin and I live in Porto.")

    assert response.status_code == 200
    # The vectors are written; the outbox still says pending.
    assert index_keys(s3, tenant_a) == active_keys(tenant_a) != set()
    # Two facts and the message's episode.
    assert VectorOperation.objects.filter(applied_at__isnull=True).count() == 3
    failing_outbox_mark()
    repair_and_check(s3, tenant_a)
    assert len(active_keys(tenant_a)) == 3


@pytest.mark.django_db(transaction=True)
def test_a_throttled_delete_is_finished_later(s3, client_a, tenant_a):
    post_message(client_a, "u1", "I play the violin and I live in Porto.")
    s3.fail_next("DeleteVectors", times=2, code="ThrottlingException", status=429)

    forgotten = post_forget(client_a, "u1", "Forget that I play the violin.")

    # The violin fact, and the episode of the message it came from.
    assert sorted(each["kind"] for each in forgotten.json()["forgotten"]) == [
        "episode",
        "fact",
    ]
    # The vectors outlived their rows for now, but they are never recalled.
    assert len(index_keys(s3, tenant_a)) == 3
    search = client_a.post(
        "/api/v1/memories/search",
        {"userId": "u1", "query": "violin", "topK": 5},
        format="json",
    )
    assert all("violin" not in hit["text"] for hit in search.json()["hits"])
    repair_and_check(s3, tenant_a)
    # The Porto fact is all that is left.
    assert len(active_keys(tenant_a)) == 1
    assert Memory.objects.get(status="active").kind == "fact"


@pytest.mark.django_db
def test_a_process_killed_between_commit_and_put(s3, client_a, tenant_a):
    # In a test wrapped in one transaction, after-commit work never runs: the
    # same state as a process killed right after its commit.
    post_message(client_a, "u1", "I play the violin and I live in Porto.")

    assert index_keys(s3, tenant_a) == set()
    # Two facts and the message's episode.
    assert VectorOperation.objects.filter(applied_at__isnull=True).count() == 3
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("reconcile_vectors", "--no-progress", stdout=out)
    assert "missing" in out.getvalue()
    repair_and_check(s3, tenant_a)
    assert len(active_keys(tenant_a)) == 3


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts connections and never answers:
    S3 Vectors stalled, as botocore's real connect and read timeouts see it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.held: list[socket.socket] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stopped.is_set():
            try:
                connection_, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.held.append(connection_)

    def close(self) -> None:
        self.stopped.set()
        self.thread.join()
        for held in self.held:
            held.close()
        self.sock.close()


@pytest.mark.django_db(transaction=True)
def test_a_stalled_s3_vectors_answers_json_in_bounded_time_and_is_repaired(
    s3, settings, client_a, tenant_a
):
    # The store works, then stalls: every call waits on a server that never
    # answers, for attempts x (connect + read) at most.
    assert post_message(client_a, "u1", "I play the violin.").status_code == 200
    stored = sorted(Memory.objects.values_list("pk", "status"))
    silent = SilentServer()
    settings.LTM_S3VECTORS_ENDPOINT_URL = silent.url
    settings.LTM_S3VECTORS_CONNECT_TIMEOUT_SECONDS = 0.3
    settings.LTM_S3VECTORS_READ_TIMEOUT_SECONDS = 0.3
    reset_vector_store()
    try:
        answers = []
        for send in (
            lambda: post_message(client_a, "u1", "I live in Porto."),
            lambda: post_message(client_a, "u2", "My sister is called Ines."),
            lambda: client_a.post(
                "/api/v1/memories/search",
                {"userId": "u1", "query": "violin"},
                format="json",
            ),
            lambda: post_forget(client_a, "u1", "Forget that I play the violin."),
        ):
            started = time.monotonic()
            response = send()
            answers.append((response, time.monotonic() - started))
    finally:
        silent.close()
    assert silent.held, "the store never reached the stalled server"
    for response, seconds in answers:
        # Each call gives up after its timeouts, well before gunicorn's
        # --timeout 60 would cut the request off with an HTML page.
        assert seconds < 10, (response.status_code, seconds)
        assert response.status_code == 503
        assert response["Content-Type"] == "application/json"
        assert response.json()["error"]["code"] == "provider_unavailable"
    # "Nothing was stored", as the answer says: no half-done message or forget.
    assert sorted(Memory.objects.values_list("pk", "status")) == stored

    settings.LTM_S3VECTORS_ENDPOINT_URL = ""
    settings.LTM_S3VECTORS_CONNECT_TIMEOUT_SECONDS = 2.0
    settings.LTM_S3VECTORS_READ_TIMEOUT_SECONDS = 6.0
    reset_vector_store()
    repair_and_check(s3, tenant_a)
    assert post_message(client_a, "u1", "I live in Porto.").status_code == 200
    repair_and_check(s3, tenant_a)


@pytest.mark.django_db(transaction=True)
def test_a_stalled_s3_vectors_call_gets_only_the_time_left_of_the_request(
    s3, settings, client_a
):
    # Configured for 2 x (5 + 5) s per call, the store may take only what is
    # left of a request of 1.5 s: one shorter attempt, then a JSON 503.
    get_embedder().embed(["loaded before the clock starts"])
    silent = SilentServer()
    settings.LTM_S3VECTORS_ENDPOINT_URL = silent.url
    settings.LTM_S3VECTORS_CONNECT_TIMEOUT_SECONDS = 5
    settings.LTM_S3VECTORS_READ_TIMEOUT_SECONDS = 5
    settings.LTM_REQUEST_TIME_BUDGET_SECONDS = 1.5
    reset_vector_store()
    try:
        started = time.monotonic()
        response = client_a.post(
            "/api/v1/memories/search",
            {"userId": "u1", "query": "violin"},
            format="json",
        )
        seconds = time.monotonic() - started
    finally:
        silent.close()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "provider_unavailable"
    assert seconds < 3
