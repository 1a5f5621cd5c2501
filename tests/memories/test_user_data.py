"""forget_user erases everything of an end user, resumably and verified;
export_user_data streams everything stored about one."""

import json
import math
from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from memories import outbox, writes
from memories.models import Memory, MemoryEvent, Message, VectorOperation
from memories.providers.embeddings import get_embedder
from memories.user_data import core as user_data
from memories.vectorstores import (
    Namespace,
    VectorRecord,
    VectorStoreError,
    get_vector_store,
    reset_vector_store,
    use_vector_store,
)
from tests.fakes.s3vectors import fake_s3vectors
from tests.helpers import database_rows_containing, post_forget, post_message

# The outbox writes vectors after commit.
pytestmark = pytest.mark.django_db(transaction=True)

# Words only u1 of tenant A ever said; each must be gone after forget_user.
U1_WORDS = ["Lisbon", "Porto", "peanuts", "saxophone", "Rosa", "Nazaré", "heron"]


def import_messages(client, user_id, messages):
    response = client.post(
        "/api/v1/memories/import",
        {"userId": user_id, "messages": messages},
        format="json",
    )
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture
def told(client_a, client_b):
    """u1 of tenant A with memories, an updated one, a forgotten one and
    imported messages; u2 of tenant A and u1 of tenant B beside them."""
    post_message(client_a, "u1", "I live in Lisbon and I am allergic to peanuts.")
    post_message(client_a, "u1", "I moved to Porto last week.")  # updates home
    post_message(client_a, "u1", "I play the saxophone and I have a cat.")
    post_forget(client_a, "u1", "Forget that I have a cat.")
    import_messages(
        client_a,
        "u1",
        [
            {
                "speaker": "Rosa",
                "text": "I went surfing in Nazaré yesterday.",
                "sentAt": "2024-05-08T13:56:00Z",
                "clientMessageId": "D1:1",
            },
            {
                "speaker": "Rosa",
                "text": "I saw a heron by the river.",
                "sentAt": "2024-05-08T13:57:00Z",
                "clientMessageId": "D1:2",
            },
        ],
    )
    post_message(client_a, "u2", "I collect vintage typewriters.")
    post_message(client_b, "u1", "I paddle a red kayak every Sunday.")
    home = Memory.objects.get(user_id="u1", slot="home", status="active")
    assert [e.old_text for e in home.events.all()] == ["", "I live in Lisbon."]
    # The cat, and the episode of the message it came from.
    forgotten = Memory.objects.filter(user_id="u1", status="deleted")
    assert sorted(forgotten.values_list("kind", flat=True)) == ["episode", "fact"]


def forget_user(*args: str) -> tuple[int, str]:
    """Run the command; its exit status and everything it said."""
    out = StringIO()
    try:
        call_command("forget_user", *args, "--no-progress", stdout=out)
    except CommandError as error:
        return error.returncode, f"{out.getvalue()}{error}"
    return 0, out.getvalue()


def vector_count(tenant, user_id="u1") -> int:
    return get_vector_store().count(
        namespace=Namespace(tenant_id=tenant.pk, user_id=user_id)
    )


def keyword_index_rows(word: str) -> int:
    """Documents of the database's keyword index holding a word, which
    database_rows_containing does not read (an FTS5 table on SQLite, a tsvector
    column on PostgreSQL)."""
    if connection.vendor == "sqlite":
        query = (
            "SELECT count(*) FROM memories_memory_fts WHERE memories_memory_fts "
            "MATCH %s"
        )
        word = f'"{word}"'
    else:
        query = (
            "SELECT count(*) FROM memories_memory "
            "WHERE search_vector @@ plainto_tsquery('english', %s)"
        )
    with connection.cursor() as cursor:
        cursor.execute(query, [word])
        return cursor.fetchone()[0]


REMAINS_NOTHING = (
    "remaining: 0 vector(s), 0 memory row(s) with content, "
    "0 history event(s) with text, 0 message(s) with text, 0 export file(s)"
)


# --- forget_user ---------------------------------------------------------------
@pytest.mark.usefixtures("told")
def test_forget_user_leaves_no_vector_and_no_text_anywhere(tenant_a, tenant_b):
    memories = Memory.objects.filter(tenant=tenant_a, user_id="u1").count()
    messages = Message.objects.filter(tenant=tenant_a, user_id="u1").count()
    assert vector_count(tenant_a) > 0
    assert keyword_index_rows("saxophone") == 1

    status, out = forget_user("--tenant", "tenant-a", "u1")

    assert status == 0, out
    assert REMAINS_NOTHING in out
    assert vector_count(tenant_a) == 0
    for word in U1_WORDS:
        assert database_rows_containing(word) == [], word
        assert keyword_index_rows(word) == 0, word
    # Tombstones: every row stays, without content.
    assert Memory.objects.filter(tenant=tenant_a, user_id="u1").count() == memories
    assert not Memory.objects.filter(user_id="u1", tenant=tenant_a).exclude(
        status="deleted"
    )
    for memory in Memory.objects.filter(tenant=tenant_a, user_id="u1"):
        assert bytes(memory.embedding) == b""
        assert [e.action for e in memory.events.all()][-1] == "delete"
    home_events = MemoryEvent.objects.filter(
        memory__tenant=tenant_a, memory__user_id="u1", action="update"
    )
    assert [(e.old_text, e.new_text) for e in home_events] == [("", "")]
    # The fact forgotten before and its message's episode were deleted already.
    assert MemoryEvent.objects.filter(actor="operator:forget_user").count() == (
        memories - 2
    )
    # And they still say who deleted them.
    assert sorted(
        Memory.objects.filter(tenant=tenant_a, user_id="u1").values_list(
            "updated_by", flat=True
        )
    ) == ["api"] * 2 + ["operator:forget_user"] * (memories - 2)
    kept = Message.objects.filter(tenant=tenant_a, user_id="u1")
    assert kept.count() == messages
    assert all(message.redacted_at is not None for message in kept)
    # The client's own ids stay: they are how it knows which messages these were.
    assert sorted(kept.exclude(client_message_id="").values_list(
        "client_message_id", flat=True
    )) == ["D1:1", "D1:2"]  # fmt: skip
    assert not VectorOperation.objects.filter(
        memory__user_id="u1", memory__tenant=tenant_a, applied_at__isnull=True
    ).exists()


def keyword_index_bytes() -> bytes:
    """Everything SQLite's full-text index keeps, its segments included."""
    shadow_tables = ["data", "idx", "content", "docsize", "config"]
    found = b""
    with connection.cursor() as cursor:
        for table in shadow_tables:
            cursor.execute(f"SELECT * FROM memories_memory_fts_{table}")  # noqa: S608
            for row in cursor.fetchall():
                found += b" ".join(
                    value if isinstance(value, bytes) else str(value).encode()
                    for value in row
                )
    return found.lower()


@pytest.mark.skipif(
    connection.vendor != "sqlite", reason="SQLite's full-text index only"
)
@pytest.mark.usefixtures("told")
def test_the_keyword_index_keeps_no_stem_of_the_erased_words():
    # The index holds stems ("saxophone" as "saxophon") and the speaker's name.
    stems = [b"saxophon", b"peanut", b"heron", b"rosa"]
    before = keyword_index_bytes()
    assert [stem for stem in stems if stem not in before] == []

    forget_user("--tenant", "tenant-a", "u1")

    index = keyword_index_bytes()
    assert [stem for stem in stems if stem in index] == []
    assert b"typewrit" in index  # u2's words stay searchable


@pytest.mark.usefixtures("told")
def test_forget_user_leaves_other_users_and_tenants_alone(tenant_a, tenant_b):
    before = {
        (tenant_a, "u2"): vector_count(tenant_a, "u2"),
        (tenant_b, "u1"): vector_count(tenant_b, "u1"),
    }

    forget_user("--tenant", "tenant-a", "u1")

    assert before == {
        (tenant_a, "u2"): vector_count(tenant_a, "u2"),
        (tenant_b, "u1"): vector_count(tenant_b, "u1"),
    }
    assert all(before.values())
    assert database_rows_containing("typewriters")
    assert database_rows_containing("kayak")
    assert Memory.objects.filter(tenant=tenant_b, user_id="u1", status="active")
    assert Message.objects.filter(tenant=tenant_b, user_id="u1").exclude(text="")


@pytest.mark.usefixtures("told")
def test_a_dry_run_prints_counts_and_changes_nothing(tenant_a):
    def snapshot():
        return (
            list(Memory.objects.values_list("pk", "status", "text", "embedding")),
            list(MemoryEvent.objects.values_list("pk", "old_text", "new_text")),
            list(Message.objects.values_list("pk", "text", "redacted_at")),
            VectorOperation.objects.count(),
            vector_count(tenant_a),
        )

    before = snapshot()
    memories = Memory.objects.filter(tenant=tenant_a, user_id="u1")

    status, out = forget_user("--tenant", "tenant-a", "u1", "u2", "--dry-run")

    assert status == 0, out
    assert snapshot() == before
    messages = Message.objects.filter(tenant=tenant_a, user_id="u1")
    assert (
        f"'u1': {memories.count()} memory row(s) "
        f"({memories.filter(status='active').count()} to forget), "
        f"{messages.count()} message(s) ({messages.exclude(text='').count()} with "
        "text), "
    ) in out
    assert f"{vector_count(tenant_a)} vector(s) in the store" in out
    # u2's fact and the episode of its message.
    assert "'u2': 2 memory row(s) (2 to forget)" in out
    assert "nothing changed for 2 user(s)" in out


class FailingSecondDelete:
    """Wraps the real store; its second delete fails."""

    def __init__(self, inner):
        self.inner = inner
        self.deletes = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def delete(self, **kwargs):
        self.deletes += 1
        if self.deletes == 2:
            raise VectorStoreError("injected: delete failed")
        return self.inner.delete(**kwargs)


@pytest.mark.usefixtures("told")
def test_a_failure_halfway_exits_non_zero_and_a_second_run_finishes(tenant_a):
    store = get_vector_store()
    active = Memory.objects.filter(tenant=tenant_a, user_id="u1", status="active")
    assert active.count() >= 4
    use_vector_store(FailingSecondDelete(store))

    status, out = forget_user("--tenant", "tenant-a", "u1", "--batch-size", "2")

    assert status == 1
    assert "injected: delete failed" in out
    assert "run the command again" in out
    # The first batch is done; the second is erased in the table, its vector
    # deletes wait in the outbox; the rest is untouched.
    assert vector_count(tenant_a) == active.count() + 2
    pending = VectorOperation.objects.filter(
        memory__user_id="u1", memory__tenant=tenant_a, applied_at__isnull=True
    )
    assert pending.count() == 2
    assert all(op.memory.status == "deleted" and op.memory.text == "" for op in pending)
    assert "injected" in pending.first().last_error

    use_vector_store(store)
    status, out = forget_user("--tenant", "tenant-a", "u1", "--batch-size", "2")

    assert status == 0, out
    assert REMAINS_NOTHING in out
    assert vector_count(tenant_a) == 0
    assert not pending.all().exists()  # .all(): the first result is cached
    for word in U1_WORDS:
        assert database_rows_containing(word) == [], word


def test_a_vector_no_row_names_is_deleted_and_a_third_run_has_nothing_to_do(
    tenant_a, client_a
):
    post_message(client_a, "u1", "I play the saxophone.")
    store = get_vector_store()
    namespace = Namespace(tenant_id=tenant_a.pk, user_id="u1")
    vector = np.ones(store.dimension, dtype=np.float32) / np.sqrt(store.dimension)
    store.put(namespace=namespace, records=[VectorRecord("stray", vector, {})])

    status, out = forget_user("--tenant", "tenant-a", "u1")

    assert status == 0, out
    assert "1 leftover vector(s) deleted" in out
    assert vector_count(tenant_a) == 0
    status, out = forget_user("--tenant", "tenant-a", "u1")
    assert "'u1': 0 memory row(s) erased" in out
    assert REMAINS_NOTHING in out


def test_deleted_memories_left_with_content_are_erased_too(tenant_a, client_a):
    post_message(client_a, "u1", "I play the saxophone and I live in Porto.")
    # As a path that deleted without erasing would have left them.
    Memory.objects.filter(user_id="u1").update(status="deleted")
    # Two facts and the message's episode.
    assert vector_count(tenant_a) == 3

    status, out = forget_user("--tenant", "tenant-a", "u1")

    assert status == 0, out
    assert "'u1': 3 memory row(s) erased (0 newly deleted)" in out
    assert vector_count(tenant_a) == 0
    assert database_rows_containing("saxophone") == []


def test_verification_fails_while_a_vector_of_a_live_memory_remains(
    tenant_a, client_a, monkeypatch
):
    post_message(client_a, "u1", "I play the saxophone.")
    real_purge = user_data._purge_messages

    def purge_then_remember(**kwargs):
        # A memory that arrives as the forget ends: this run does not erase it.
        purged = real_purge(**kwargs)
        post_message(client_a, "u1", "I have a dog named Rex.")
        return purged

    monkeypatch.setattr(user_data, "_purge_messages", purge_then_remember)

    status, out = forget_user("--tenant", "tenant-a", "u1")

    assert status == 1
    # The new fact and its message's episode.
    assert "remaining: 2 vector(s), 2 memory row(s) with content" in out
    assert "Data remains for 1 user(s): 'u1'; run it again" in out


def test_user_ids_come_from_a_file(tenant_a, client_a, tmp_path):
    post_message(client_a, "u1", "I play the saxophone.")
    post_message(client_a, "user two", "I collect vintage typewriters.")
    ids = tmp_path / "ids.txt"
    ids.write_text("u1\n\nuser two\nu1\n", encoding="utf-8")

    status, out = forget_user("--tenant", "tenant-a", "--file", str(ids))

    assert status == 0, out
    assert out.count(REMAINS_NOTHING) == 2
    assert database_rows_containing("saxophone") == []
    assert database_rows_containing("typewriters") == []


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--tenant", "nope", "u1"], "No tenant with slug 'nope'"),
        (["--tenant", "tenant-a"], "Give user ids or --file"),
        (["--tenant", "tenant-a", "u1", "--batch-size", "0"], "at least 1"),
    ],
)
def test_bad_input_is_refused(tenant_a, args, error):
    status, out = forget_user(*args)
    assert status == 1
    assert error in out


BUCKET = "ltm-test"


@pytest.fixture
def on_s3(settings):
    with fake_s3vectors() as fake:
        fake.client().create_vector_bucket(vectorBucketName=BUCKET)
        settings.LTM_VECTOR_STORE = "s3vectors"
        settings.LTM_S3VECTORS_BUCKET = BUCKET
        settings.LTM_S3VECTORS_REGION = "us-east-1"
        settings.LTM_S3VECTORS_MAX_ATTEMPTS = 2
        reset_vector_store()
        yield fake
        reset_vector_store()


def bulk_memories(tenant, user_id: str, count: int) -> None:
    """Memories with random vectors, stored through the outbox in one go."""
    embedder = get_embedder()
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((count, embedder.dimension)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    memories = [
        writes.memory_build(
            tenant=tenant,
            user_id=user_id,
            kind="fact",
            text=f"I own heron number {i}.",
            vector=vector,
            message=None,
            actor="test",
        )
        for i, vector in enumerate(vectors)
    ]
    with outbox.vector_sync_batch():
        writes.memories_create(memories=memories, actor="test")


def test_on_s3_vectors_deletes_go_in_batches_of_500(on_s3, tenant_a, tenant_b):
    bulk_memories(tenant_a, "u1", 1203)
    bulk_memories(tenant_b, "u1", 3)
    assert vector_count(tenant_a) == 1203
    on_s3.reset_calls()

    status, out = forget_user("--tenant", "tenant-a", "u1")

    assert status == 0, out
    assert REMAINS_NOTHING in out
    assert on_s3.calls["DeleteVectors"] == math.ceil(1203 / 500) == 3
    assert on_s3.calls["PutVectors"] == 0
    assert vector_count(tenant_a) == 0
    assert vector_count(tenant_b) == 3
    assert Memory.objects.filter(tenant=tenant_b, text__contains="heron").count() == 3


def test_a_dry_run_on_s3_vectors_only_reads(on_s3, tenant_a):
    bulk_memories(tenant_a, "u1", 7)
    on_s3.reset_calls()

    status, out = forget_user("--tenant", "tenant-a", "u1", "--dry-run")

    assert status == 0, out
    assert "7 vector(s) in the store" in out
    assert set(on_s3.calls) <= {"ListVectors", "GetIndex", "ListIndexes"}


# --- export_user_data ------------------------------------------------------------
def export(*args: str) -> str:
    out = StringIO()
    call_command("export_user_data", *args, "--no-progress", stdout=out)
    return out.getvalue()


def read_export(text: str, export_format: str) -> dict:
    """The export as one JSON object, whichever format it came in."""
    if export_format == "json":
        return json.loads(text)
    header, *records, end = [json.loads(line) for line in text.splitlines()]
    assert header.pop("type") == "header"
    sections = {"memory": [], "message": []}
    for record in records:
        sections[record.pop("type")].append(record)
    assert end == {
        "type": "end",
        "memories": len(sections["memory"]),
        "messages": len(sections["message"]),
    }
    return {**header, "memories": sections["memory"], "messages": sections["message"]}


@pytest.mark.usefixtures("told")
@pytest.mark.parametrize("export_format", ["json", "jsonl"])
@pytest.mark.parametrize("to_file", [False, True], ids=["stdout", "file"])
def test_the_export_holds_every_memory_and_message_of_the_user_only(
    tenant_a, tmp_path, export_format, to_file
):
    target = tmp_path / f"u1.{export_format}"
    output = export(
        "--tenant",
        "tenant-a",
        "u1",
        "--format",
        export_format,
        "--output",
        str(target) if to_file else "-",
    )
    if to_file:
        # Six facts and the episodes of the five messages they came from.
        assert "Wrote 11 memories and 6 messages" in output
        assert target.stat().st_mode & 0o077 == 0  # personal data: owner only
        output = target.read_text(encoding="utf-8")
    exported = read_export(output, export_format)

    assert exported["format"] == "ltm-user-export"
    assert exported["version"] == 1
    assert exported["tenant"] == "tenant-a"
    assert exported["userId"] == "u1"
    assert exported["exportedAt"].endswith("Z")
    memories = Memory.objects.filter(tenant=tenant_a, user_id="u1")
    messages = Message.objects.filter(tenant=tenant_a, user_id="u1")
    assert sorted(m["id"] for m in exported["memories"]) == sorted(
        str(key) for key in memories.values_list("vector_key", flat=True)
    )
    assert sorted(m["id"] for m in exported["messages"]) == sorted(
        messages.values_list("pk", flat=True)
    )
    for word in U1_WORDS:
        assert word in output
    for other in ("typewriters", "kayak"):
        assert other not in output

    # A message and the fact it states can have the same words: tell them apart.
    facts = {str(key) for key in memories.filter(kind="fact").values_list(
        "vector_key", flat=True
    )}  # fmt: skip
    assert len(facts) == 6
    by_text = {m["text"]: m for m in exported["memories"] if m["id"] in facts}
    episodes = {m["text"]: m for m in exported["memories"] if m["id"] not in facts}
    assert set(episodes) == {
        "",  # the message stating the fact forgotten before
        "I live in Lisbon and I am allergic to peanuts.",
        "I moved to Porto last week.",
        "I went surfing in Nazaré yesterday.",
        "I saw a heron by the river.",
    }
    assert episodes["I saw a heron by the river."]["speaker"] == "Rosa"
    home = by_text["I moved to Porto last week."]
    assert [(e["action"], e["oldText"]) for e in home["history"]] == [
        ("add", ""),
        ("update", "I live in Lisbon."),
    ]
    assert home["history"][1]["validUntil"] is not None
    assert home["history"][1]["actor"] == "api"
    heron = by_text["I saw a heron by the river."]
    assert heron["speaker"] == "Rosa"
    assert [s["clientMessageId"] for s in heron["sources"]] == ["D1:2"]
    assert heron["sourceMessageId"] == heron["sources"][0]["messageId"]
    # The memory forgotten before, the episode of its message, and the forget
    # request, are tombstones.
    tombstones = [m for m in exported["memories"] if m["status"] == "deleted"]
    assert len(tombstones) == 2
    assert len([m for m in tombstones if m["id"] in facts]) == 1
    for tombstone in tombstones:
        assert tombstone["text"] == ""
        assert [e["action"] for e in tombstone["history"]] == ["add", "delete"]
    (request,) = [m for m in exported["messages"] if m["kind"] == "forget"]
    assert (request["text"], request["redactedAt"] is not None) == ("", True)
    imported = [m for m in exported["messages"] if m["clientMessageId"]]
    assert [(m["clientMessageId"], m["speaker"]) for m in imported] == [
        ("D1:1", "Rosa"),
        ("D1:2", "Rosa"),
    ]


@pytest.mark.usefixtures("told")
def test_after_forget_user_the_export_is_tombstones_only():
    forget_user("--tenant", "tenant-a", "u1")

    output = export("--tenant", "tenant-a", "u1")

    exported = json.loads(output)
    assert {m["status"] for m in exported["memories"]} == {"deleted"}
    assert all(m["text"] == "" for m in exported["memories"])
    assert all(m["redactedAt"] for m in exported["messages"])
    for word in U1_WORDS:
        assert word not in output


def test_the_export_of_an_unknown_user_is_empty_but_well_formed(tenant_a):
    exported = json.loads(export("--tenant", "tenant-a", "nobody"))
    assert (exported["memories"], exported["messages"]) == ([], [])


def test_the_export_refuses_an_unknown_tenant(tenant_a):
    with pytest.raises(CommandError, match="No tenant with slug 'nope'"):
        export("--tenant", "nope", "u1")


def test_the_export_reads_a_chunk_of_rows_per_query_not_a_row(
    tenant_a, django_assert_max_num_queries
):
    bulk_memories(tenant_a, "u1", 1200)

    # The tenant; per 500 memories one query for them, one for their sources
    # and one for their history; the messages.
    with django_assert_max_num_queries(1 + 3 * 3 + 1):
        exported = json.loads(export("--tenant", "tenant-a", "u1"))

    assert len(exported["memories"]) == 1200


@pytest.mark.usefixtures("told")
def test_a_failed_export_leaves_no_file(tmp_path, monkeypatch):
    def failing(tenant, user_id, message_id):
        yield from ()
        raise RuntimeError("injected: the database went away")

    monkeypatch.setattr(user_data, "_message_records", failing)
    exports = tmp_path / "exports"
    exports.mkdir()

    with pytest.raises(RuntimeError, match="injected"):
        export("--tenant", "tenant-a", "u1", "--output", str(exports / "u1.json"))

    assert list(exports.iterdir()) == []
