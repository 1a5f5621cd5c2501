"""Memory that keeps what it is told: every message is an episode beside its
facts, long messages fit, newer values win, and forgetting leaves nothing."""

import threading
from pathlib import Path

import pytest
import requests
from django.conf import settings

from memories.models import Memory
from tests.helpers import post_forget, post_message

SEARCH = "/api/v1/memories/search"
IMPORT = "/api/v1/memories/import"


def _search(client, user_id, query, **extra):
    response = client.post(
        SEARCH, {"userId": user_id, "query": query, "topK": 10, **extra}, format="json"
    )
    assert response.status_code == 200, response.content
    return response.json()["hits"]


@pytest.mark.parametrize(
    ("said", "query"),
    [
        ("Can you suggest a recipe for a vegan lasagna?", "vegan lasagna recipe"),
        ("Please help me plan a trip to Kyoto in April.", "Kyoto trip"),
        ("def parse_invoice(path): return open(path).read()", "parse_invoice"),
        ("Eu moro em Coimbra com a minha irmã.", "Coimbra"),
        ("我在北京工作。", "北京"),
    ],
)
def test_what_no_rule_turns_into_a_fact_is_found_again(client_a, said, query):
    assert post_message(client_a, "u1", said).status_code == 200
    hits = _search(client_a, "u1", query)
    assert hits, f"{said!r} was not found by {query!r}"
    assert hits[0]["kind"] == "episode"
    assert hits[0]["text"] == said
    assert hits[0]["role"] == "user"
    assert hits[0]["provenance"][0]["messageId"] > 0


def test_facts_and_episodes_are_ranked_together_and_can_be_filtered(client_a):
    post_message(client_a, "u1", "I adopted a greyhound named Pixel.")
    hits = _search(client_a, "u1", "greyhound Pixel")
    assert {hit["kind"] for hit in hits} == {"fact", "episode"}
    only_facts = _search(client_a, "u1", "greyhound Pixel", filters={"kind": "fact"})
    assert [hit["kind"] for hit in only_facts] == ["fact"]


def test_a_client_can_search_only_what_the_user_said(client_a):
    response = client_a.post(
        IMPORT,
        {
            "userId": "u1",
            "messages": [
                {
                    "text": "Which telescope should I buy?",
                    "sentAt": "2024-03-01T09:00Z",
                },
                {
                    "text": "A telescope with a 130 mm mirror suits a beginner.",
                    "sentAt": "2024-03-01T09:01Z",
                    "role": "assistant",
                },
            ],
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["episodes"] == 2
    everything = _search(client_a, "u1", "telescope")
    assert {hit["role"] for hit in everything} == {"user", "assistant"}
    users = _search(client_a, "u1", "telescope", filters={"role": "user"})
    assert {hit["role"] for hit in users} == {"user"}
    assert users[0]["text"] == "Which telescope should I buy?"


def test_a_long_message_is_accepted_and_kept_in_passages(client_a):
    sentence = "The quarterly report covers revenue, staffing and the new warehouse. "
    long_text = (sentence * 450).strip() + " Zanzibar is where the offsite happens."
    assert 30_000 < len(long_text) <= settings.LTM_MAX_MESSAGE_CHARS
    response = post_message(client_a, "u1", long_text)
    assert response.status_code == 200, response.content
    episodes = response.json()["episodes"]
    assert len(episodes) > 1
    assert all(len(e["text"].split()) <= settings.LTM_PASSAGE_WORDS for e in episodes)
    hits = _search(client_a, "u1", "Zanzibar offsite")
    assert "Zanzibar" in hits[0]["text"]


def test_one_long_message_does_not_reject_an_import(client_a):
    reply = "Here is a detailed answer about sourdough hydration. " * 1200
    response = client_a.post(
        IMPORT,
        {
            "userId": "u1",
            "messages": [
                {"text": "How do I bake sourdough?", "sentAt": "2024-03-01T09:00Z"},
                {"text": reply, "sentAt": "2024-03-01T09:01Z", "role": "assistant"},
            ],
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["imported"] == 2
    assert len(reply) > 60_000


def test_a_message_over_the_limit_is_refused_with_the_limit_named(client_a):
    response = post_message(client_a, "u1", "x" * (settings.LTM_MAX_MESSAGE_CHARS + 1))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert str(settings.LTM_MAX_MESSAGE_CHARS) in error["message"]


def test_a_newer_number_updates_the_fact_and_history_keeps_the_old(client_a):
    post_message(client_a, "u1", "I own 4 bikes.")
    response = post_message(client_a, "u1", "I own 5 bikes.")
    body = response.json()
    assert [change["previousText"] for change in body["updated"]] == ["I own 4 bikes."]
    facts = Memory.objects.filter(user_id="u1", kind="fact", status="active")
    assert [memory.text for memory in facts] == ["I own 5 bikes."]
    detail = client_a.get(f"/api/v1/memories/{body['updated'][0]['id']}").json()
    assert [(e["oldText"], e["newText"]) for e in detail["history"]][-1] == (
        "I own 4 bikes.",
        "I own 5 bikes.",
    )


def test_a_true_repeat_is_stored_once(client_a):
    post_message(client_a, "u1", "I own 4 bikes.")
    post_message(client_a, "u1", "I own 4 bikes!")
    assert (
        Memory.objects.filter(user_id="u1", kind="fact", status="active").count() == 1
    )


def _files_containing(directory: Path, word: str) -> list[str]:
    needle = word.encode()
    return [
        str(path)
        for path in directory.rglob("*")
        if path.is_file() and needle in path.read_bytes()
    ]


@pytest.fixture
def gym_told(client_a):
    post_message(client_a, "u1", "My gym membership renews every March.")
    post_message(client_a, "u1", "I keep a kombucha scoby in the fridge.")
    post_message(client_a, "u1", "The gym sauna is my favourite part of Fridays.")


@pytest.mark.django_db(transaction=True)
def test_forgetting_a_topic_forgets_every_memory_of_it(client_a, gym_told, tmp_path):
    response = post_forget(client_a, "u1", "Forget the gym thing.")
    assert response.status_code == 200
    body = response.json()
    assert body["scope"] == "memories"
    assert body["forgottenCount"] >= 2
    for word in ("gym", "renews", "sauna"):
        assert not [hit for hit in _search(client_a, "u1", word) if word in hit["text"]]
    assert _search(client_a, "u1", "kombucha scoby")
    for word in ("membership", "sauna"):
        assert _files_containing(tmp_path, word) == []
        assert not Memory.objects.filter(text__icontains=word).exists()
        assert not Memory.objects.filter(context_text__icontains=word).exists()


def test_forgetting_one_fact_reaches_the_later_message_that_repeats_it(client_a):
    post_message(client_a, "u1", "I am allergic to peanuts.")
    post_message(
        client_a, "u1", "At the party I skipped the cake, allergic to peanuts."
    )
    post_forget(client_a, "u1", "Forget that I am allergic to peanuts.")
    hits = _search(client_a, "u1", "peanuts")
    assert not [hit for hit in hits if "peanut" in hit["text"]]


@pytest.mark.django_db(transaction=True)
def test_forgetting_everything_erases_the_user(client_a, gym_told, tmp_path):
    post_message(client_a, "u2", "I keep bees on the roof.")
    response = post_forget(client_a, "u1", "Forget everything you know about me.")
    body = response.json()
    assert body["scope"] == "everything"
    assert body["forgottenCount"] >= 6
    assert "forgotten everything" in body["reply"]
    assert not Memory.objects.filter(user_id="u1").exclude(status="deleted").exists()
    for word in ("kombucha", "membership", "sauna"):
        assert _files_containing(tmp_path, word) == []
    assert _search(client_a, "u2", "bees")


def test_a_forget_that_matches_nothing_says_so(client_a, gym_told):
    body = post_forget(client_a, "u1", "Forget that I play the tuba.").json()
    assert body["forgotten"] == []
    assert "nothing" in body["reply"].lower()


@pytest.mark.parametrize("how", ["delete", "forget"])
def test_every_tombstone_has_one_shape(client_a, how):
    post_message(client_a, "u1", "I collect vintage typewriters.")
    fact = Memory.objects.get(user_id="u1", kind="fact")
    if how == "delete":
        assert client_a.delete(f"/api/v1/memories/{fact.vector_key}").status_code == 204
    else:
        post_forget(client_a, "u1", "Forget that I collect vintage typewriters.")
    for memory in Memory.objects.filter(user_id="u1"):
        assert memory.status == "deleted"
        assert (memory.text, memory.speaker, memory.content_hash) == ("", "", "")
        assert (memory.search_body, memory.context_text, memory.slot) == ("", "", "")
        assert bytes(memory.embedding) == b""


def test_query_counts_of_message_and_search_are_pinned(
    client_a, django_assert_num_queries
):
    for i in range(5):
        post_message(client_a, "u1", f"I planted {i + 3} tulips in the garden.")
    # The count does not grow with the user's memories. It includes applying
    # the previous message's outbox entries (9 queries: in a test's transaction
    # nothing commits, so the next request applies them, as after a failure:
    # whether any are pending, the claim in its savepoint, reading the claimed
    # memories and their claims, marking them, and whether newer ones came),
    # and on SQLite the user's count of memories for the keyword ranking, on
    # PostgreSQL the user's write lock (its ranking reads the count itself).
    # No stored fact is near the new one, so no fact row is read for it.
    from django.db import connection

    postgres = connection.vendor == "postgresql"
    with django_assert_num_queries(31):
        post_message(client_a, "u1", "I bought a blue watering can.")
    # Token, keyword ranking (SQLite: the user's count, the rows holding each
    # word, their repeats; PostgreSQL: one statement), candidates, rows,
    # provenance.
    with django_assert_num_queries(5 if postgres else 7):
        _search(client_a, "u1", "tulips garden")


@pytest.mark.django_db(transaction=True)
def test_the_same_statement_sent_at_once_is_stored_once(live_server, tenant_a):
    from accounts.services import token_issue

    token = token_issue(tenant=tenant_a).secret
    results = []

    def send() -> None:
        response = requests.post(
            f"{live_server.url}/api/v1/message",
            json={"userId": "u1", "message": "I keep three hives of bees."},
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        results.append(response.status_code)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 8
    active = Memory.objects.filter(tenant=tenant_a, user_id="u1", status="active")
    assert active.filter(kind="fact").count() == 1
    assert active.filter(kind="episode").count() == 1
    assert active.get(kind="episode").sources.count() == 8


@pytest.mark.django_db(transaction=True)
def test_the_same_import_sent_at_once_is_stored_once(live_server, tenant_a):
    from accounts.services import token_issue

    token = token_issue(tenant=tenant_a).secret
    batch = {
        "userId": "u1",
        "messages": [
            {
                "text": f"I walked {i} km along the river today.",
                "sentAt": f"2024-03-01T09:{i:02d}Z",
                "clientMessageId": f"m{i}",
            }
            for i in range(20)
        ],
    }
    answers = []

    def send() -> None:
        response = requests.post(
            f"{live_server.url}{IMPORT}",
            json=batch,
            headers={"Authorization": f"Bearer {token}"},
            timeout=120,
        )
        answers.append((response.status_code, response.json().get("messageIds")))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [status for status, _ in answers] == [200] * 4
    assert len({tuple(sorted(ids.items())) for _, ids in answers}) == 1
    from memories.models import Message

    assert Message.objects.filter(tenant=tenant_a, user_id="u1").count() == 20


def test_a_reply_puts_the_newer_fact_before_what_was_said_earlier(client_a):
    post_message(client_a, "u1", "I live in Porto.")
    post_message(client_a, "u1", "I moved to Lisbon last month.")
    reply = post_message(client_a, "u1", "Where do I live?").json()["reply"]
    remembered, _, said = reply.partition("What you said before")
    assert "Lisbon" in remembered
    assert "Porto" not in remembered
    assert '"I live in Porto." (' in said
