import pytest

from memories.models import Memory, MemoryEvent, Message
from memories.public_ids import message_pk
from memories.vectorstores import Namespace
from tests.helpers import database_rows_containing, post_forget, post_message

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def told(client_a):
    return post_message(
        client_a, "u1", "I moved to Lisbon last month and I am allergic to peanuts."
    ).json()


def test_forget_removes_only_the_fact_named(client_a, told):
    response = post_forget(client_a, "u1", "Forget that I am allergic to peanuts.")
    assert response.status_code == 200
    body = response.json()
    assert body["scope"] == "memories"
    # The fact, and the episode of the message it came from (which also holds
    # every word of the request).
    assert [(m["kind"], m["previousText"]) for m in body["forgotten"]] == [
        ("fact", "I am allergic to peanuts."),
        ("episode", "I moved to Lisbon last month and I am allergic to peanuts."),
    ]
    assert all(m["status"] == "deleted" and m["text"] == "" for m in body["forgotten"])
    assert body["forgottenCount"] == 2
    assert "allergic to peanuts" in body["reply"]
    remaining = Memory.objects.filter(user_id="u1", status="active")
    assert [(m.kind, m.text) for m in remaining] == [
        ("fact", "I moved to Lisbon last month.")
    ]


def test_a_forgotten_fact_is_never_recalled_again(client_a, told):
    post_forget(client_a, "u1", "Forget that I am allergic to peanuts.")
    recalled = post_message(client_a, "u1", "Am I allergic to peanuts?").json()[
        "recalled"
    ]
    assert all("peanut" not in m["text"] for m in recalled)


def test_a_forgotten_fact_leaves_no_text_anywhere(client_a, told, vector_store):
    peanuts_id = told["added"][1]["id"]
    post_forget(client_a, "u1", "Forget that I am allergic to peanuts.")
    assert database_rows_containing("peanut") == []
    namespace = Namespace(
        tenant_id=Memory.objects.get(vector_key=peanuts_id).tenant_id, user_id="u1"
    )
    assert vector_store.get(namespace=namespace, keys=[peanuts_id]) == []
    # The tombstone: the memory row and its history remain, without content.
    tombstone = Memory.objects.get(vector_key=peanuts_id)
    assert tombstone.status == "deleted"
    assert (tombstone.text, tombstone.content_hash, bytes(tombstone.embedding)) == (
        "",
        "",
        b"",
    )
    assert [e.action for e in MemoryEvent.objects.filter(memory=tombstone)] == [
        "add",
        "delete",
    ]
    # The message it came from is redacted; the other fact from it is kept.
    assert Message.objects.get(pk=message_pk(told["messageId"])).redacted_at is not None
    assert Memory.objects.filter(text__contains="Lisbon", status="active").exists()


def test_forget_of_something_never_said_forgets_nothing(client_a, told):
    body = post_forget(client_a, "u1", "Forget that I play the violin.").json()
    assert body["forgotten"] == []
    assert (body["scope"], body["forgottenCount"]) == ("memories", 0)
    assert "nothing was forgotten" in body["reply"]
    assert Memory.objects.filter(status="active", kind="fact").count() == 2
    assert Memory.objects.filter(status="active", kind="episode").count() == 1


def test_forget_everything_about_a_topic(client_a):
    post_message(client_a, "u1", "I work as a baker at Padaria Lisboa.")
    post_message(client_a, "u1", "My job starts at 5 am.")
    post_message(client_a, "u1", "I have a dog named Rex.")
    body = post_forget(client_a, "u1", "Forget everything about my job.").json()
    assert body["scope"] == "memories"
    forgotten = sorted(
        m["previousText"] for m in body["forgotten"] if m["kind"] == "fact"
    )
    assert forgotten == [
        "I work as a baker at Padaria Lisboa.",
        "My job starts at 5 am.",
    ]
    # Both facts and the episodes of both messages they came from.
    assert body["forgottenCount"] == 4
    assert sorted((m.kind, m.text) for m in Memory.objects.filter(status="active")) == [
        ("episode", "I have a dog named Rex."),
        ("fact", "I have a dog named Rex."),
    ]
    assert database_rows_containing("baker") == []


def test_the_forget_request_itself_is_not_stored_with_its_words(client_a, told):
    post_forget(client_a, "u1", "Forget that I am allergic to peanuts.")
    request = Message.objects.get(kind="forget")
    assert request.text == ""


def test_delete_by_id_forgets_one_memory(client_a, told):
    memory_id = told["added"][0]["id"]
    response = client_a.delete(f"/api/v1/memories/{memory_id}")
    assert response.status_code == 204
    assert database_rows_containing("lisbon") == []
    gone = client_a.get(f"/api/v1/memories/{memory_id}")
    assert (gone.status_code, gone.json()["error"]["code"]) == (404, "not_found")
    listed = client_a.get("/api/v1/memories", {"userId": "u1", "kind": "fact"}).json()[
        "results"
    ]
    assert [m["text"] for m in listed] == ["I am allergic to peanuts."]
    # The tombstone, without content, is listed among the deleted.
    deleted = client_a.get(
        "/api/v1/memories", {"userId": "u1", "kind": "fact", "status": "deleted"}
    ).json()["results"]
    assert [(m["id"], m["status"], m["text"]) for m in deleted] == [
        (memory_id, "deleted", "")
    ]
    # Deleting it again is a no-op, so a retried DELETE succeeds.
    assert client_a.delete(f"/api/v1/memories/{memory_id}").status_code == 204


def test_forget_everything_erases_the_whole_user(client_a, told):
    post_message(client_a, "u1", "I have a dog named Rex.")
    post_message(client_a, "u2", "I have a cat named Tom.")
    body = post_forget(client_a, "u1", "Forget everything you know about me.").json()
    assert body["scope"] == "everything"
    # 3 facts and 2 episodes.
    assert body["forgottenCount"] == 5
    assert body["forgotten"] == []
    assert "usage" in body
    assert not Memory.objects.filter(user_id="u1", status="active").exists()
    assert database_rows_containing("lisbon") == []
    assert database_rows_containing("rex") == []
    assert Memory.objects.filter(user_id="u2", status="active").count() == 2


def test_a_plain_forget_request_does_not_erase_everything(client_a, told):
    body = post_forget(client_a, "u1", "Forget everything about my allergies.").json()
    assert body["scope"] == "memories"
    assert Memory.objects.filter(text__contains="Lisbon", status="active").exists()
