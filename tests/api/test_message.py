import pytest

from memories.models import Memory, MemoryEvent, Message
from memories.public_ids import message_pk
from tests.helpers import post_message

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_keeps_the_original_contract_on_both_paths(client_a):
    for path in ("/message", "/api/v1/message"):
        response = post_message(client_a, "u1", "Hello there!", path=path)
        assert response.status_code == 200
        assert isinstance(response.json()["reply"], str)
        assert response.json()["reply"]


def test_it_stores_each_first_person_fact_of_a_message(client_a):
    response = post_message(
        client_a, "u1", "I moved to Lisbon last month and I am allergic to peanuts."
    )
    body = response.json()
    texts = [memory["text"] for memory in body["added"]]
    assert texts == ["I moved to Lisbon last month.", "I am allergic to peanuts."]
    assert all(
        memory["sourceMessageId"] == body["messageId"] for memory in body["added"]
    )
    assert all(memory["kind"] == "fact" for memory in body["added"])
    assert (
        Memory.objects.filter(user_id="u1", status="active", kind="fact").count() == 2
    )
    message = Message.objects.get(pk=message_pk(body["messageId"]))
    assert "Lisbon" in message.text
    # The message itself is also kept, as said: one episode.
    (episode,) = body["episodes"]
    assert episode["kind"] == "episode"
    assert episode["role"] == "user"
    assert episode["text"] == message.text
    assert episode["sourceMessageId"] == body["messageId"]
    assert Memory.objects.filter(user_id="u1", kind="episode").count() == 1


def test_a_question_recalls_the_memory_that_answers_it(client_a):
    post_message(
        client_a, "u1", "I moved to Lisbon last month and I am allergic to peanuts."
    )
    response = post_message(client_a, "u1", "Where do I live?")
    body = response.json()
    assert body["added"] == []
    assert body["recalled"][0]["text"] == "I moved to Lisbon last month."
    assert "Lisbon" in body["reply"]
    assert "No language model is configured" in body["reply"]


def test_questions_and_small_talk_are_not_stored(client_a):
    for text in ("Hi!", "Thanks a lot.", "What time is it?", "Can you help me?", "ok"):
        assert post_message(client_a, "u1", text).json()["added"] == []
    assert Memory.objects.filter(kind="fact").count() == 0
    # What was said is still kept, as episodes.
    assert sorted(
        Memory.objects.filter(kind="episode").values_list("text", flat=True)
    ) == sorted(("Hi!", "Thanks a lot.", "What time is it?", "Can you help me?", "ok"))


def test_a_duplicate_fact_is_not_stored_twice(client_a):
    post_message(client_a, "u1", "I am allergic to peanuts.")
    second = post_message(client_a, "u1", "i am allergic to peanuts!").json()
    third = post_message(client_a, "u1", "I'm allergic to peanuts.").json()
    for body in (second, third):
        assert body["added"] == []
        assert body["updated"] == []
    assert Memory.objects.filter(user_id="u1", kind="fact").count() == 1
    # An episode is a copy of the words: the same words (up to case and
    # punctuation) are kept once, other words again.
    assert second["episodes"] == []
    assert [e["text"] for e in third["episodes"]] == ["I'm allergic to peanuts."]
    assert Memory.objects.filter(user_id="u1", kind="episode").count() == 2


def test_a_new_home_replaces_the_old_one_and_history_keeps_it(client_a, vector_store):
    first = post_message(client_a, "u1", "I live in Porto.").json()["added"][0]
    body = post_message(client_a, "u1", "I moved to Lisbon last month.").json()
    assert body["added"] == []
    (updated,) = body["updated"]
    assert updated["id"] == first["id"]
    assert updated["text"] == "I moved to Lisbon last month."
    assert updated["previousText"] == "I live in Porto."
    memory = Memory.objects.get(vector_key=first["id"])
    assert [(e.action, e.old_text, e.new_text) for e in memory.events.all()] == [
        ("add", "", "I live in Porto."),
        ("update", "I live in Porto.", "I moved to Lisbon last month."),
    ]
    recalled = post_message(client_a, "u1", "Where do I live?").json()["recalled"]
    facts = [m["text"] for m in recalled if m["kind"] == "fact"]
    assert facts == ["I moved to Lisbon last month."]


def test_a_relative_date_is_resolved_against_the_message_time(client_a):
    body = post_message(client_a, "u1", "I moved to Lisbon last month.").json()
    memory = Memory.objects.get(vector_key=body["added"][0]["id"])
    sent_at = Message.objects.get(pk=message_pk(body["messageId"])).sent_at
    expected_month = (sent_at.month - 2) % 12 + 1
    assert memory.happened_at.month == expected_month
    assert memory.time_granularity == "month"


def test_every_memory_records_its_model_hash_and_actor(client_a):
    post_message(client_a, "u1", "My favourite colour is green.")
    memories = Memory.objects.all()
    assert sorted(memory.kind for memory in memories) == ["episode", "fact"]
    for memory in memories:
        assert memory.embedding_model == "all-MiniLM-L6-v2-onnx-dynamic-int8"
        assert memory.embedding_dimension == 384
        assert len(memory.content_hash) == 64
        assert memory.updated_by == "api"
        assert MemoryEvent.objects.get(memory=memory).actor == "api"


def test_users_of_one_tenant_do_not_share_memories(client_a):
    post_message(client_a, "alice", "I am allergic to peanuts.")
    recalled = post_message(client_a, "bob", "What am I allergic to?").json()[
        "recalled"
    ]
    assert recalled == []


def test_a_messages_memory_update_is_read_by_its_tenant_only(client_a, client_b):
    sent = post_message(client_a, "u1", "I keep bees on the roof.").json()
    assert sent["memoryUpdate"] == "done"

    status = client_a.get(f"/api/v1/messages/{sent['messageId']}")

    assert status.status_code == 200
    body = status.json()
    assert body["memoryUpdate"] == "done"
    assert body["userId"] == "u1"
    assert sorted(memory["kind"] for memory in body["memories"]) == ["episode", "fact"]
    # Another tenant gets not_found for the same id, as for an id that never was.
    for client, message_id in (
        (client_b, sent["messageId"]),
        (client_a, sent["messageId"] ^ 1),
    ):
        missing = client.get(f"/api/v1/messages/{message_id}")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"
