"""Keyword weights come from the user's own memories and everyday language,
never from what other tenants store."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test import override_settings

SEARCH = "/api/v1/memories/search"
IMPORT = "/api/v1/memories/import"


def _import(client, user_id, texts):
    start = datetime(2025, 3, 1, 9, tzinfo=UTC)
    response = client.post(
        IMPORT,
        {
            "userId": user_id,
            "messages": [
                {"text": text, "sentAt": (start + timedelta(minutes=i)).isoformat()}
                for i, text in enumerate(texts)
            ],
        },
        format="json",
    )
    assert response.status_code == 200, response.content


def _keyword_ranked(client, user_id, query):
    response = client.post(
        SEARCH, {"userId": user_id, "query": query, "topK": 10}, format="json"
    )
    assert response.status_code == 200, response.content
    hits = [hit for hit in response.json()["hits"] if hit["keywordRank"]]
    return [hit["text"] for hit in sorted(hits, key=lambda hit: hit["keywordRank"])]


def test_another_tenants_memories_do_not_move_a_users_ranking(client_a, client_b):
    _import(
        client_a,
        "u1",
        ["I play the violin every Sunday.", "My garden has roses.", "I cooked pasta."],
    )
    before = _keyword_ranked(client_a, "u1", "violin garden")
    assert before, "neither word was found"
    # The same user id in another tenant says the first word everywhere; a
    # table-wide count would make it worthless and reorder tenant A's hits.
    word = "violin" if "violin" in before[0] else "garden"
    _import(client_b, "u1", [f"A {word} story, part {i}." for i in range(60)])
    assert _keyword_ranked(client_a, "u1", "violin garden") == before


def test_everyday_words_weigh_little_even_in_a_new_users_memories(client_a):
    # Alone, the user's memories make "really" the rarer word (said once, and
    # Coimbra twice), so its memory would come first. (Apart, so that neither
    # message is in the other's context.)
    _import(
        client_a,
        "u1",
        [
            "Really fun.",
            "The weather was mild.",
            "We had lunch by the river.",
            "The train was late.",
            "We visited Coimbra last spring.",
            "The hotel had a small pool.",
            "We took the bus home.",
            "Coimbra has a fine old university.",
        ],
    )

    def really_first() -> bool:
        ranked = _keyword_ranked(client_a, "u1", "really Coimbra")
        said_coimbra = [i for i, text in enumerate(ranked) if "Coimbra" in text]
        return ranked.index("Really fun.") < min(said_coimbra)

    assert not really_first()
    with override_settings(LTM_SEARCH_BACKGROUND_LANGUAGE=""):
        from memories.search.keyword import background_share

        background_share.cache_clear()
        try:
            assert really_first()
        finally:
            background_share.cache_clear()


# The fast ranking for large users is SQLite's; PostgreSQL ranks every user
# with its GIN index.
sqlite_only = pytest.mark.skipif(
    connection.vendor != "sqlite", reason="SQLite's full-text index only"
)

KEYWORD_TEXTS = [
    "I drink green tea every morning, tea with honey, and more tea at noon.",
    "Tea is fine.",
    "My sister brought green apples from the market in Porto.",
    "We walked along the river in Porto after the market closed.",
    "I repaired the green bicycle; the bicycle needed a new chain.",
    "The market sells honey, apples and bread on Saturdays.",
]
KEYWORD_QUERIES = [
    "green tea honey",
    "market in Porto",
    "bicycle chain repaired",
    "apples honey bread",
]


def _rankings(client, user_id):
    return {query: _keyword_ranked(client, user_id, query) for query in KEYWORD_QUERIES}


# A user's rows holding each word are found by walking the user's partition
# once a word, or, for a user holding most of the index, once in all; both ways.
BOTH_LISTINGS = pytest.mark.parametrize(
    "lone_user_share", [float("inf"), 0.0], ids=["per-word", "once"]
)


def _bm25_reference(keyword, partition, terms, context_weight, user_total):
    """FTS5's own bm25() of each word over the user's rows, its index-wide
    weight divided out and the user's put in: what the ranking must equal."""
    table = "memories_memory_fts"
    scores = {}
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT block FROM {table}_data WHERE id = 1")  # noqa: S608
        index_rows = keyword._averages(cursor.fetchone()[0])[0]
        for term in terms:
            cursor.execute(
                f"SELECT count(*) FROM {table} WHERE {table} MATCH %s",  # noqa: S608
                [f'{{body context}} : "{term}"'],
            )
            index_weight = keyword.idf(total=index_rows, matching=cursor.fetchone()[0])
            cursor.execute(
                f"SELECT rowid, bm25({table}, 0.0, 1.0, {context_weight}) "  # noqa: S608
                f"FROM {table} WHERE {table} MATCH %s",
                [f'partition : "{partition}" AND {{body context}} : "{term}"'],
            )
            found = cursor.fetchall()
            weight = keyword.term_weight(term, total=user_total, matching=len(found))
            for pk, bm25 in found:
                scores[pk] = scores.get(pk, 0.0) - bm25 / index_weight * weight
    return scores


@sqlite_only
@BOTH_LISTINGS
def test_a_users_keyword_scores_equal_fts5_bm25_with_the_users_own_weights(
    client_a, client_b, tenant_a, monkeypatch, lone_user_share
):
    from memories.models import Memory
    from memories.search import keyword
    from memories.text import query_terms

    monkeypatch.setattr(keyword, "LONE_USER_SHARE", lone_user_share)
    _import(client_a, "u1", KEYWORD_TEXTS)
    # Other users' rows change the index-wide counts and lengths, not the scores.
    _import(client_a, "u2", [*KEYWORD_TEXTS, "Tea, tea, tea and green tea."])
    _import(client_b, "u1", ["Porto market honey bread " * 3] * 4)
    partition = keyword.sqlite_partition(tenant_a.pk, "u1")
    user_total = Memory.objects.filter(tenant=tenant_a, user_id="u1").count()
    for query in [*KEYWORD_QUERIES, "tea", "green tea market Porto river honey"]:
        terms = query_terms(query)
        scores = keyword._sqlite_scores(
            partition=partition, terms=terms, context_weight=0.5
        )
        reference = _bm25_reference(keyword, partition, terms, 0.5, user_total)
        assert reference, query
        assert scores.keys() == reference.keys(), query
        for pk, score in reference.items():
            assert scores[pk] == pytest.approx(score, rel=1e-9), query


@sqlite_only
@BOTH_LISTINGS
def test_a_large_users_faster_ranking_orders_as_bm25_when_words_are_rare(
    client_a, monkeypatch, lone_user_share
):
    """Beyond LTM_SEARCH_EXACT_KEYWORD_MEMORIES the scores are computed from
    the rows rather than by bm25(); with every word in few memories, repeats
    are counted and the order is bm25()'s."""
    from memories.search import keyword

    monkeypatch.setattr(keyword, "LONE_USER_SHARE", lone_user_share)
    _import(client_a, "u1", KEYWORD_TEXTS)
    exact = _rankings(client_a, "u1")
    assert exact["green tea honey"][0].startswith("I drink green tea")
    with override_settings(LTM_SEARCH_EXACT_KEYWORD_MEMORIES=0):
        assert _rankings(client_a, "u1") == exact


@sqlite_only
@BOTH_LISTINGS
def test_a_large_users_faster_ranking_holds_only_that_users_memories(
    client_a, client_b, tenant_a, monkeypatch, lone_user_share
):
    from memories.models import Memory
    from memories.search import keyword

    monkeypatch.setattr(keyword, "LONE_USER_SHARE", lone_user_share)
    _import(client_a, "u1", KEYWORD_TEXTS)
    # The same words, said by another user of the tenant and by the same user
    # id of another tenant.
    _import(client_a, "u2", KEYWORD_TEXTS)
    _import(client_b, "u1", KEYWORD_TEXTS)
    own = set(
        Memory.objects.filter(tenant=tenant_a, user_id="u1").values_list(
            "pk", flat=True
        )
    )
    exact = {
        query: keyword.keyword_ranking(
            tenant=tenant_a, user_id="u1", query=query, limit=100
        )
        for query in KEYWORD_QUERIES
    }
    with override_settings(LTM_SEARCH_EXACT_KEYWORD_MEMORIES=0):
        for query in KEYWORD_QUERIES:
            ranked = keyword.keyword_ranking(
                tenant=tenant_a, user_id="u1", query=query, limit=100
            )
            assert ranked, query
            assert set(ranked) <= own, query
            assert ranked == exact[query], query


@sqlite_only
@BOTH_LISTINGS
def test_beyond_the_repeat_limit_a_common_word_counts_once_a_field(
    client_a, monkeypatch, lone_user_share
):
    from memories.search import keyword

    monkeypatch.setattr(keyword, "LONE_USER_SHARE", lone_user_share)
    filler = ["The weather was mild.", "The train was late.", "We took the bus."]
    _import(
        client_a,
        "u1",
        ["Tea, tea and more tea: I drank tea all day.", *filler, "Tea is fine."],
    )
    repeated, short = "Tea, tea and more tea: I drank tea all day.", "Tea is fine."
    assert _keyword_ranked(client_a, "u1", "tea")[0] == repeated
    with override_settings(LTM_SEARCH_EXACT_KEYWORD_MEMORIES=0):
        assert _keyword_ranked(client_a, "u1", "tea")[0] == repeated
        monkeypatch.setattr(keyword, "REPEATS_COUNTED_UP_TO", 0)
        # Counted once each, the shorter memory comes first.
        assert _keyword_ranked(client_a, "u1", "tea")[0] == short


@sqlite_only
def test_past_the_exact_limit_only_the_rarest_words_of_a_query_are_ranked(client_a):
    _import(client_a, "u1", ["Really fun.", *FILLER, *FILLER, "Coimbra is old."])
    assert "Really fun." in _keyword_ranked(client_a, "u1", Q)
    with override_settings(
        LTM_SEARCH_EXACT_KEYWORD_MEMORIES=0, LTM_SEARCH_FAST_KEYWORD_TERMS=1
    ):
        ranked = _keyword_ranked(client_a, "u1", Q)
    assert "Coimbra is old." in ranked
    assert "Really fun." not in ranked


FILLER = ["The weather was mild.", "The train was late.", "We took the bus."]
Q = "really Coimbra"


def test_each_users_count_of_keyword_documents_follows_every_change(
    client_a, client_b, tenant_a
):
    """The count the ranking reads is kept by triggers: it must equal the
    user's active memories after imports, deletions, hiding and erasure."""
    from memories.models import Memory
    from memories.moderation import memory_hide
    from memories.search.keyword import sqlite_partition

    _import(client_a, "u1", ["I like tea.", *FILLER, "My dog is Rex."])
    _import(client_a, "u2", ["I live in Porto."])
    _import(client_b, "u1", ["I play chess."])
    mine = Memory.objects.filter(tenant=tenant_a, user_id="u1", status="active")
    first = mine.first()
    assert client_a.delete(f"/api/v1/memories/{first.vector_key}").status_code == 204
    hidden = mine.first()
    memory_hide(memory=hidden, actor="staff", reason="test")
    assert client_a.delete("/api/v1/users/u2").status_code == 200

    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT partition, documents FROM memories_memory_fts_count")
        else:
            cursor.execute(
                "SELECT tenant_id, user_id, documents FROM memories_keyword_count"
            )
        counted = {tuple(row[:-1]): row[-1] for row in cursor}
    active = {}
    for memory in Memory.objects.filter(status="active"):
        key = (
            (sqlite_partition(memory.tenant_id, memory.user_id),)
            if connection.vendor == "sqlite"
            else (memory.tenant_id, memory.user_id)
        )
        active[key] = active.get(key, 0) + 1
    assert {key: n for key, n in counted.items() if n} == active
    assert len(active) == 2


def test_counts_read_apart_from_the_rows_never_break_the_ranking(client_a):
    """Another process may write between the statement that counts a user's
    memories and the ones that read the rows: a count lower than the rows
    found must still rank."""
    from django.db import connection

    _import(client_a, "u1", ["I like green tea.", *FILLER, "Tea is fine."])
    with connection.cursor() as cursor:
        table = (
            "memories_memory_fts_count"
            if connection.vendor == "sqlite"
            else "memories_keyword_count"
        )
        cursor.execute(f"UPDATE {table} SET documents = 0")  # noqa: S608
    # Without everyday language's documents, which would hide the difference.
    with override_settings(LTM_SEARCH_BACKGROUND_DOCUMENTS=0):
        assert "Tea is fine." in _keyword_ranked(client_a, "u1", "tea")
