import pytest
from django.db import connection

from memories.search import keyword_ranking
from tests.helpers import database_rows_containing, post_forget

pytestmark = pytest.mark.django_db(transaction=True)

FACTS = [
    ("Ivo", "I adopted a greyhound named Zephyrine from the shelter.", "2023-01-10"),
    ("Ivo", "My sister is getting married in Lisbon in the spring.", "2023-02-14"),
    (
        "Lea",
        "I started a small online shop selling hand-knitted scarves.",
        "2023-03-20",
    ),
    (
        "Lea",
        "Swimming is the thing that calms me down after a hard week.",
        "2023-04-02",
    ),
    (
        "Ivo",
        "I left my job at the bakery and I want to open a bike repair shop.",
        "2023-05-05",
    ),
    ("Lea", "I went hiking in the mountains with my cousins.", "2023-06-18"),
]


@pytest.fixture
def imported(client_a):
    response = client_a.post(
        "/api/v1/memories/import",
        {
            "userId": "conv-1",
            "messages": [
                {
                    "speaker": speaker,
                    "text": text,
                    "sentAt": f"{day}T12:00:00Z",
                    "clientMessageId": f"m{index}",
                }
                for index, (speaker, text, day) in enumerate(FACTS)
            ],
        },
        format="json",
    )
    assert response.status_code == 200
    return response.json()


def search(client, query, user_id="conv-1", **extra):
    response = client.post(
        "/api/v1/memories/search",
        {"userId": user_id, "query": query, **extra},
        format="json",
    )
    assert response.status_code == 200, response.content
    return response.json()["hits"]


def test_a_rare_name_is_found_by_keyword(client_a, imported):
    hits = search(client_a, "Zephyrine", topK=1)
    assert "Zephyrine" in hits[0]["text"]
    assert hits[0]["keywordRank"] == 1


def test_a_paraphrase_is_found_by_meaning(client_a, imported):
    (hit,) = search(client_a, "What helps her unwind after stress?", topK=1)
    assert hit["text"] == "Swimming is the thing that calms me down after a hard week."
    assert hit["vectorRank"] == 1
    assert hit["keywordRank"] is None


def test_stemming_matches_other_forms_of_a_word(client_a, imported):
    hits = search(client_a, "hike", topK=1)
    assert "hiking" in hits[0]["text"]


def test_each_hit_carries_score_time_and_provenance(client_a, imported):
    (hit,) = search(client_a, "greyhound shelter", topK=1)
    assert hit["score"] > 0
    assert hit["speaker"] == "Ivo"
    assert hit["happenedAt"].startswith("2023-01-10")
    (source,) = hit["provenance"]
    assert source["clientMessageId"] == "m0"
    assert source["messageId"] == imported["messageIds"]["m0"]


def test_a_time_range_keeps_only_what_happened_inside_it(client_a, imported):
    hits = search(
        client_a,
        "what happened",
        topK=10,
        timeRange={"start": "2023-03-01T00:00:00Z", "end": "2023-05-01T00:00:00Z"},
    )
    assert {hit["provenance"][0]["clientMessageId"] for hit in hits} == {"m2", "m3"}


def test_a_speaker_filter_keeps_only_their_words(client_a, imported):
    hits = search(client_a, "swim", topK=10, filters={"speaker": "Lea"})
    assert hits
    assert {hit["speaker"] for hit in hits} == {"Lea"}


def test_top_k_is_respected_and_bounded(client_a, imported):
    assert len(search(client_a, "I", topK=2)) == 2
    response = client_a.post(
        "/api/v1/memories/search",
        {"userId": "conv-1", "query": "x", "topK": 101},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["details"]["fields"]["topK"][0]["code"] == (
        "max_value"
    )


@pytest.mark.parametrize(
    "time_range",
    [
        {"start": "2023-05-01T00:00:00Z", "end": "2023-01-01T00:00:00Z"},
        {"start": "2023-03-20T12:00:00Z", "end": "2023-03-20T12:00:00Z"},
    ],
)
def test_an_empty_time_range_finds_nothing(client_a, imported, time_range):
    # [start, end) holds nothing when end is not after start: no hits, no error.
    assert search(client_a, "scarves shop", timeRange=time_range) == []
    # The same instant as a range of one second holds what happened then.
    hits = search(
        client_a,
        "scarves shop",
        timeRange={"start": "2023-03-20T12:00:00Z", "end": "2023-03-20T12:00:01Z"},
    )
    assert {hit["provenance"][0]["clientMessageId"] for hit in hits} == {"m2"}


def test_search_never_returns_another_users_memory(client_a, imported):
    assert search(client_a, "Zephyrine greyhound", user_id="someone-else") == []


def test_search_never_returns_another_tenants_memory(client_b, imported):
    assert search(client_b, "Zephyrine greyhound", user_id="conv-1") == []
    for query in ("Zephyrine", "bike repair bakery", "p1u"):
        assert search(client_b, query, user_id="conv-1", topK=100) == []


def test_keyword_search_is_confined_to_the_user(tenant_a, tenant_b, imported):
    assert keyword_ranking(
        tenant=tenant_a, user_id="conv-1", query="Zephyrine", limit=5
    )
    assert (
        keyword_ranking(tenant=tenant_b, user_id="conv-1", query="Zephyrine", limit=5)
        == []
    )
    assert (
        keyword_ranking(tenant=tenant_a, user_id="conv-2", query="Zephyrine", limit=5)
        == []
    )


def test_message_uses_the_same_hybrid_recall(client_a):
    client_a.post(
        "/api/v1/message",
        {"userId": "u1", "message": "My dog is called Zephyrine."},
        format="json",
    )
    recalled = client_a.post(
        "/api/v1/message", {"userId": "u1", "message": "Zephyrine?"}, format="json"
    ).json()["recalled"]
    assert recalled[0]["text"] == "My dog is called Zephyrine."


def test_forgetting_removes_the_words_from_keyword_search_and_context(
    client_a, imported
):
    assert search(client_a, "Zephyrine", topK=1)
    post_forget(
        client_a, "conv-1", "Forget that I adopted a greyhound named Zephyrine."
    )
    assert database_rows_containing("zephyrine") == []
    hits = search(client_a, "Zephyrine greyhound", topK=10)
    assert all("Zephyrine" not in hit["text"] for hit in hits)
    assert all(hit["keywordRank"] is None for hit in hits)
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM memories_memory_fts "
                "WHERE memories_memory_fts MATCH 'zephyrine'"
            )
            assert cursor.fetchone()[0] == 0


def test_hits_include_episodes_and_a_kind_filter_keeps_one_kind(client_a, imported):
    hits = search(client_a, "greyhound Zephyrine", topK=10)
    assert {hit["kind"] for hit in hits} == {"fact", "episode"}
    for kind in ("fact", "episode"):
        only = search(client_a, "greyhound Zephyrine", topK=10, filters={"kind": kind})
        assert only
        assert {hit["kind"] for hit in only} == {kind}


def test_a_role_filter_keeps_only_that_roles_words(client_a, imported):
    client_a.post(
        "/api/v1/memories/import",
        {
            "userId": "conv-1",
            "messages": [
                {
                    "role": "assistant",
                    "text": "Greyhounds like short sprints and long naps.",
                    "sentAt": "2023-01-11T12:00:00Z",
                }
            ],
        },
        format="json",
    )
    said = search(client_a, "greyhound", topK=10, filters={"role": "assistant"})
    assert [(hit["kind"], hit["text"]) for hit in said] == [
        ("episode", "Greyhounds like short sprints and long naps.")
    ]
    by_user = search(client_a, "greyhound", topK=10, filters={"role": "user"})
    assert by_user
    assert {hit["role"] for hit in by_user} == {"user"}


def test_an_unknown_kind_filter_is_refused(client_a, imported):
    response = client_a.post(
        "/api/v1/memories/search",
        {"userId": "conv-1", "query": "x", "filters": {"kind": "rumour"}},
        format="json",
    )
    assert response.status_code == 400


def test_the_memory_list_filters_by_kind(client_a, imported):
    def listed(**params):
        response = client_a.get("/api/v1/memories", {"userId": "conv-1", **params})
        assert response.status_code == 200
        return response.json()["results"]

    every = listed()
    facts = listed(kind="fact")
    episodes = listed(kind="episode")
    assert {m["kind"] for m in facts} == {"fact"}
    assert {m["kind"] for m in episodes} == {"episode"}
    assert len(episodes) == len(FACTS)
    assert len(every) == len(facts) + len(episodes)
    for refused in ({"kind": "rumour"}, {"kind": ""}, {"status": ""}):
        response = client_a.get("/api/v1/memories", {"userId": "conv-1", **refused})
        assert response.status_code == 400, refused
        (field,) = refused
        assert response.json()["error"]["details"]["fields"][field][0]["code"] == (
            "invalid_choice"
        )
