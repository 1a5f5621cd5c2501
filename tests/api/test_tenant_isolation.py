"""Tenant B, with every id it can learn or guess, never reaches tenant A's data."""

import pytest

from memories.models import Memory
from memories.vectorstores import Namespace
from tests.helpers import post_forget, post_message

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def a_memory(client_a):
    body = post_message(client_a, "shared-user", "I am allergic to peanuts.").json()
    return body["added"][0]


def test_b_recalls_nothing_of_a_for_the_same_user_id(client_b, a_memory):
    body = post_message(client_b, "shared-user", "What am I allergic to?").json()
    assert body["recalled"] == []
    assert "peanut" not in body["reply"]


def test_b_cannot_read_a_memory_of_a_by_its_id(client_b, a_memory):
    response = client_b.get(f"/api/v1/memories/{a_memory['id']}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_b_cannot_list_a_users_memories(client_b, a_memory):
    response = client_b.get("/api/v1/memories", {"userId": "shared-user"})
    assert response.status_code == 200
    assert response.json() == {"results": [], "nextCursor": None}


def test_b_cannot_delete_a_memory_of_a_by_its_id(client_b, a_memory):
    response = client_b.delete(f"/api/v1/memories/{a_memory['id']}")
    assert response.status_code == 404
    assert Memory.objects.get(vector_key=a_memory["id"]).status == "active"


def test_b_cannot_forget_a_memory_of_a(client_a, client_b, a_memory):
    body = post_forget(client_b, "shared-user", "Forget that I am allergic to peanuts.")
    assert body.json()["forgotten"] == []
    assert body.json()["forgottenCount"] == 0
    assert not Memory.objects.filter(status="deleted").exists()
    recalled = post_message(client_a, "shared-user", "What am I allergic to?").json()
    facts = [m["id"] for m in recalled["recalled"] if m["kind"] == "fact"]
    assert facts == [a_memory["id"]]
    # A's episode of the message is still recalled as well.
    assert [m["text"] for m in recalled["recalled"] if m["kind"] == "episode"] == [
        "I am allergic to peanuts."
    ]


def test_b_cannot_reach_a_s_vector_with_a_s_key(
    client_b, tenant_a, tenant_b, a_memory, vector_store
):
    in_b = Namespace(tenant_id=tenant_b.pk, user_id="shared-user")
    assert vector_store.get(namespace=in_b, keys=[a_memory["id"]]) == []
    in_a = Namespace(tenant_id=tenant_a.pk, user_id="shared-user")
    assert len(vector_store.get(namespace=in_a, keys=[a_memory["id"]])) == 1


def test_tenant_ids_in_the_body_are_ignored(client_b, tenant_a, a_memory):
    response = client_b.post(
        "/api/v1/message",
        {
            "userId": "shared-user",
            "message": "What am I allergic to?",
            "tenant": tenant_a.pk,
            "tenantId": tenant_a.pk,
            "tenant_id": tenant_a.pk,
        },
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["recalled"] == []


def test_message_ids_say_nothing_of_other_tenants_traffic(client_a, client_b):
    first = post_message(client_a, "u1", "I keep bees.").json()["messageId"]
    for index in range(5):
        post_message(client_b, "u1", f"I own {index + 2} bikes.")
    second = post_message(client_a, "u1", "I keep goats.").json()["messageId"]
    # Rows 1 and 7 of one sequence: as seen, two unrelated numbers, each exact
    # in JavaScript.
    assert abs(second - first) > 1000
    assert 0 < first < 2**53
    assert 0 < second < 2**53
    hits = client_a.post(
        "/api/v1/memories/search",
        {"userId": "u1", "query": "goats", "topK": 1},
        format="json",
    ).json()["hits"]
    assert hits[0]["provenance"][0]["messageId"] == second
