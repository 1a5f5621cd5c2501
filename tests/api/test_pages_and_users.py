"""Pages of memories and of end users; an end user's export and erasure, through
the HTTP API, tenant by tenant."""

import json
from urllib.parse import quote

import pytest

from memories.models import Memory, Message
from memories.pagination import memory_cursor
from memories.public_ids import public_message_id
from tests.helpers import database_rows_containing, post_message

pytestmark = pytest.mark.django_db(transaction=True)


def _import(client, user_id: str, texts: list[str]):
    response = client.post(
        "/api/v1/memories/import",
        {
            "userId": user_id,
            "messages": [
                {
                    "text": text,
                    "sentAt": f"2024-01-01T00:{index // 60:02d}:{index % 60:02d}Z",
                    "clientMessageId": f"m{index}",
                }
                for index, text in enumerate(texts)
            ],
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    return response.json()


def _walk(client, path: str, **params) -> tuple[list[dict], int]:
    """Every row of a paged list, and the number of pages it took."""
    rows, pages, cursor = [], 0, None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = client.get(path, query)
        assert response.status_code == 200, response.content
        body = response.json()
        assert set(body) == {"results", "nextCursor"}
        rows += body["results"]
        pages += 1
        cursor = body["nextCursor"]
        if cursor is None:
            return rows, pages


@pytest.fixture
def thirty_episodes(client_a):
    # Questions: kept as episodes, no facts.
    _import(client_a, "u1", [f"Could you tell me about topic {n}?" for n in range(30)])


@pytest.mark.usefixtures("thirty_episodes")
def test_memories_come_in_pages_in_the_order_they_were_stored(client_a):
    rows, pages = _walk(client_a, "/api/v1/memories", userId="u1", limit=7)
    assert pages == 5
    stored = list(
        Memory.objects.filter(user_id="u1")
        .order_by("pk")
        .values_list("vector_key", flat=True)
    )
    assert [row["id"] for row in rows] == [str(key) for key in stored]
    first = client_a.get("/api/v1/memories", {"userId": "u1"}).json()
    assert len(first["results"]) == 30
    assert first["nextCursor"] is None


@pytest.mark.usefixtures("thirty_episodes")
def test_a_page_is_read_in_a_fixed_number_of_queries(
    client_a, django_assert_max_num_queries
):
    first = client_a.get("/api/v1/memories", {"userId": "u1", "limit": 10}).json()
    # Authentication, rate limit bookkeeping and the page itself.
    with django_assert_max_num_queries(6):
        client_a.get(
            "/api/v1/memories",
            {"userId": "u1", "limit": 20, "cursor": first["nextCursor"]},
        )


@pytest.mark.usefixtures("thirty_episodes")
def test_a_cursor_of_a_user_reaches_nothing_of_another_user_or_tenant(
    client_a, client_b
):
    _import(client_a, "u2", ["Could you tell me something?"] * 1)
    cursor = client_a.get("/api/v1/memories", {"userId": "u1", "limit": 5}).json()[
        "nextCursor"
    ]
    # The same cursor with another tenant's token: its own (empty) rows only.
    other_tenant = client_b.get(
        "/api/v1/memories", {"userId": "u1", "limit": 5, "cursor": cursor}
    )
    assert other_tenant.json() == {"results": [], "nextCursor": None}
    # Any cursor at all, from the first row number on, reaches no other tenant.
    for memory in Memory.objects.filter(user_id="u1")[:3]:
        guessed = client_b.get(
            "/api/v1/memories", {"userId": "u1", "cursor": memory_cursor(memory)}
        )
        assert guessed.json()["results"] == []
    # Another user of the same tenant: that user's rows only.
    other_user = client_a.get("/api/v1/memories", {"userId": "u2", "cursor": cursor})
    assert {row["text"] for row in other_user.json()["results"]} <= {
        "Could you tell me something?"
    }


def test_a_cursor_reveals_no_row_number(client_a):
    post_message(client_a, "u1", "I live in Lisbon.")
    post_message(client_a, "u1", "I own a bike.")
    page = client_a.get("/api/v1/memories", {"userId": "u1", "limit": 1}).json()
    first = Memory.objects.filter(user_id="u1").order_by("pk").first()
    assert page["nextCursor"] == memory_cursor(first)
    assert str(first.pk) not in page["nextCursor"]
    assert len(page["nextCursor"]) == 8


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "5.0"}, "limit"),
        ({"cursor": "short"}, "cursor"),
        ({"cursor": "not+base64"}, "cursor"),
        ({"cursor": ""}, "cursor"),
    ],
)
def test_a_bad_limit_or_cursor_is_invalid_input(client_a, params, field):
    response = client_a.get("/api/v1/memories", {"userId": "u1", **params})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert field in error["details"]["fields"]


def test_the_end_users_come_in_pages_with_their_counts(client_a, client_b):
    for user_id in ("carol", "alice", "bob", "dave/with slash"):
        post_message(client_a, user_id, "I live in Lisbon.")
    post_message(client_a, "alice", "Could you help me?")
    post_message(client_b, "eve", "I live in Porto.")
    rows, pages = _walk(client_a, "/api/v1/users", limit=2)
    assert pages == 2
    assert [row["userId"] for row in rows] == [
        "alice",
        "bob",
        "carol",
        "dave/with slash",
    ]
    alice = rows[0]
    assert alice["messages"] == 2
    assert alice["facts"] == 1
    assert alice["episodes"] == 2
    assert alice["memories"] == 3
    assert alice["lastMessageAt"] is not None
    # Tenant B sees its own user only.
    assert [row["userId"] for row in _walk(client_b, "/api/v1/users")[0]] == ["eve"]


def test_a_users_cursor_of_another_tenant_shows_only_the_callers_users(
    client_a, client_b
):
    for user_id in ("a1", "a2", "a3"):
        post_message(client_a, user_id, "I live in Lisbon.")
    post_message(client_b, "b9", "I live in Porto.")
    cursor = client_a.get("/api/v1/users", {"limit": 1}).json()["nextCursor"]
    page = client_b.get("/api/v1/users", {"cursor": cursor}).json()
    assert [row["userId"] for row in page["results"]] == ["b9"]


def test_an_export_streams_the_users_data_with_public_message_ids(client_a, client_b):
    post_message(client_a, "u/1", "I live in Lisbon.")
    post_message(client_b, "u/1", "I live in Porto.")
    response = client_a.get(f"/api/v1/users/{quote('u/1', safe='')}/export")
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "application/json"
    export = json.loads(b"".join(response.streaming_content))
    assert (export["format"], export["version"], export["userId"]) == (
        "ltm-user-export",
        1,
        "u/1",
    )
    assert export["tenant"] == "tenant-a"
    texts = {memory["text"] for memory in export["memories"]}
    assert "I live in Lisbon." in texts
    assert not any("Porto" in text for text in texts)
    (message,) = Message.objects.filter(tenant__slug="tenant-a", user_id="u/1")
    assert [item["id"] for item in export["messages"]] == [
        public_message_id(message.pk)
    ]
    assert {memory["sourceMessageId"] for memory in export["memories"]} == {
        public_message_id(message.pk)
    }


def test_an_export_of_an_unknown_user_or_another_tenants_is_not_found(
    client_a, client_b
):
    post_message(client_a, "u1", "I live in Lisbon.")
    for client, user_id in ((client_b, "u1"), (client_a, "nobody")):
        response = client.get(f"/api/v1/users/{user_id}/export")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


def test_an_export_refuses_a_user_id_a_body_would_refuse(client_a):
    response = client_a.get(f"/api/v1/users/{quote(' padded')}/export")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_input"


def test_erasing_a_user_leaves_nothing_and_says_it_verified(client_a, client_b):
    post_message(client_a, "u1", "I am allergic to peanuts.")
    post_message(client_b, "u1", "I am allergic to walnuts.")
    response = client_a.delete("/api/v1/users/u1")
    assert response.status_code == 200
    body = response.json()
    assert body["userId"] == "u1"
    assert body["verified"] is True
    assert body["memoriesErased"] == 2
    assert body["messagesPurged"] == 1
    assert body["vectorsDeleted"] >= 2
    assert body["remaining"] == {
        "vectors": 0,
        "memoriesWithContent": 0,
        "historyEventsWithText": 0,
        "messagesWithText": 0,
        "exportFiles": 0,
    }
    assert database_rows_containing("peanuts") == []
    # Tenant B's user of the same id is untouched.
    assert database_rows_containing("walnuts") != []
    listed = client_b.get("/api/v1/memories", {"userId": "u1"}).json()["results"]
    assert len(listed) == 2
    # Again: nothing more to erase, verified again.
    again = client_a.delete("/api/v1/users/u1").json()
    assert (again["memoriesErased"], again["verified"]) == (0, True)
    # Erased, the user is gone as a deleted memory is.
    assert client_a.get("/api/v1/users/u1/export").status_code == 404


def test_an_erasure_asked_to_respond_async_is_a_job_its_tenant_can_follow(
    client_a, client_b
):
    for text in ("I am allergic to peanuts.", "I live in Porto."):
        post_message(client_a, "u1", text)

    response = client_a.delete("/api/v1/users/u1", HTTP_PREFER="respond-async")

    assert response.status_code == 202
    job = response.json()
    assert response["Location"] == f"/api/v1/erasures/{job['jobId']}"
    assert (job["userId"], job["memoriesTotal"]) == ("u1", 4)
    # Without a broker the task ran in the request: the job is done.
    followed = client_a.get(response["Location"]).json()
    assert followed["state"] == "done"
    assert followed["memoriesDone"] == 4
    assert followed["result"]["verified"] is True
    assert followed["result"]["memoriesErased"] == 4
    assert followed["finishedAt"] is not None
    assert database_rows_containing("peanuts") == []
    # Another tenant, or a made-up id, is not_found.
    assert client_b.get(response["Location"]).status_code == 404
    assert client_a.get("/api/v1/erasures/not-a-job").status_code == 404


def test_another_tenant_erasing_the_same_user_id_erases_nothing_of_a(
    client_a, client_b
):
    post_message(client_a, "u1", "I am allergic to peanuts.")
    body = client_b.delete("/api/v1/users/u1").json()
    assert (body["memoriesErased"], body["messagesPurged"]) == (0, 0)
    assert database_rows_containing("peanuts") != []


def test_the_user_endpoints_need_a_token(anonymous_client):
    for response in (
        anonymous_client.get("/api/v1/users"),
        anonymous_client.get("/api/v1/users/u1/export"),
        anonymous_client.delete("/api/v1/users/u1"),
    ):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "not_authenticated"


def test_the_user_endpoints_are_rate_limited(client_a, settings):
    settings.LTM_RATE_LIMIT = "2/min"
    client_a.get("/api/v1/users")
    client_a.get("/api/v1/users")
    response = client_a.get("/api/v1/users/u1/export")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limited"
    assert "Retry-After" in response
