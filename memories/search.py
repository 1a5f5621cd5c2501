"""Hybrid recall: vector similarity fused with keyword relevance.

The vector store ranks the user's memories by cosine similarity; the database's own
full-text index (SQLite FTS5 with BM25, PostgreSQL tsvector with ts_rank_cd) ranks
them by keywords, stemmed. Reciprocal rank fusion combines the two lists. The
database then decides what exists, is active and passes the filters.
"""

import re
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from django.conf import settings
from django.db import connection
from django.db.models import Q

from accounts.models import Tenant
from memories.models import Memory
from memories.vectorstores import Namespace, get_vector_store

_STOP_WORDS_TEXT = (
    "a an the i me my we our you your is am are was were be been being to of in "
    "on at for and or that this it its about what with do did does has have had "
    "how when where who whom why which would will can could should there their "
    "they them he she his her him by from as so if not no but just than then too "
    "very also any some into out up down over after before again here s t"
)
_STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())
MAX_QUERY_TERMS = 32


@dataclass(frozen=True)
class SearchFilters:
    """Conditions every returned memory meets."""

    happened_after: datetime | None = None
    happened_before: datetime | None = None
    speaker: str | None = None
    slot: str | None = None


@dataclass(frozen=True)
class SearchHit:
    memory: Memory
    score: float  # the fused score; higher is better
    similarity: float  # cosine similarity of the memory to the query
    keyword_rank: int | None = None  # 1-based, None when no keyword matched
    vector_rank: int | None = None
    provenance: list = field(default_factory=list)


def query_terms(text: str) -> list[str]:
    """Distinct lowercase words of a query, without stop words."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    terms = [word for word in dict.fromkeys(words) if word not in _STOP_WORDS]
    return terms[:MAX_QUERY_TERMS]


def _sqlite_partition(tenant: Tenant, user_id: str) -> str:
    # Must match the FTS triggers: 'p' || tenant_id || 'u' || lower(hex(user_id)).
    return f"p{tenant.pk}u{user_id.encode().hex()}"


def _filter_sql(filters: SearchFilters, column_prefix: str) -> tuple[str, list]:
    clauses, params = [], []
    if filters.happened_after is not None:
        clauses.append(f"{column_prefix}happened_at >= %s")
        params.append(filters.happened_after)
    if filters.happened_before is not None:
        clauses.append(f"{column_prefix}happened_at < %s")
        params.append(filters.happened_before)
    if filters.speaker is not None:
        clauses.append(f"{column_prefix}speaker = %s")
        params.append(filters.speaker)
    if filters.slot is not None:
        clauses.append(f"{column_prefix}slot = %s")
        params.append(filters.slot)
    return "".join(f" AND {clause}" for clause in clauses), params


def keyword_ranking(
    *,
    tenant: Tenant,
    user_id: str,
    query: str,
    limit: int,
    filters: SearchFilters | None = None,
) -> list[int]:
    """Ids of the user's active memories matching the query's words, best first."""
    terms = query_terms(query)
    if not terms or limit <= 0:
        return []
    filters = filters or SearchFilters()
    extra, extra_params = _filter_sql(filters, "m.")
    context_weight = settings.LTM_SEARCH_CONTEXT_WEIGHT
    if connection.vendor == "sqlite":
        words = " OR ".join(f'"{term}"' for term in terms)
        match = f'partition : "{_sqlite_partition(tenant, user_id)}" AND ' + (
            f"{{body context}} : ({words})"
        )
        # Only numbers are formatted into the SQL; every value is bound.
        sql = (
            "SELECT f.rowid FROM memories_memory_fts f "  # noqa: S608
            "JOIN memories_memory m ON m.id = f.rowid "
            "WHERE memories_memory_fts MATCH %s AND m.tenant_id = %s "
            f"AND m.user_id = %s{extra} "
            f"ORDER BY bm25(memories_memory_fts, 0.0, 1.0, {float(context_weight)}) "
            "LIMIT %s"
        )
        params = [match, tenant.pk, user_id, *extra_params, limit]
    elif connection.vendor == "postgresql":
        sql, params = _postgres_bm25(
            tenant=tenant,
            user_id=user_id,
            terms=terms,
            limit=limit,
            extra=extra,
            extra_params=extra_params,
            context_weight=float(context_weight),
        )
    else:  # pragma: no cover - guarded by the migration
        return []
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


def _postgres_bm25(
    *,
    tenant: Tenant,
    user_id: str,
    terms: list[str],
    limit: int,
    extra: str,
    extra_params: list,
    context_weight: float,
) -> tuple[str, list]:
    """A BM25-like ranking in PostgreSQL, which has no BM25 of its own.

    ts_rank_cd knows nothing of how rare a word is, so a name said in every
    message would weigh as much as the one rare word that matters. Here each
    term's inverse document frequency is counted over the user's memories, and a
    memory scores the sum of the idf of the terms it contains, its own words
    (weight A) counting fully and its context (weight B) by the context weight.
    """
    term_queries, counts, score_parts, params = [], [], [], []
    for index, term in enumerate(terms):
        term_queries.append(
            f"to_tsquery('english'::regconfig, %s) AS q{index}, "
            f"to_tsquery('english'::regconfig, %s) AS qa{index}, "
            f"to_tsquery('english'::regconfig, %s) AS qb{index}"
        )
        params.extend([term, f"{term}:A", f"{term}:B"])
        counts.append(f"count(*) FILTER (WHERE d.sv @@ q.q{index}) AS df{index}")
        score_parts.append(
            f"ln(1 + (n.total - n.df{index} + 0.5) / (n.df{index} + 0.5)) * ("
            f"(d.sv @@ q.qa{index})::int"
            f" + {context_weight} * (d.sv @@ q.qb{index})::int)"
        )
    any_term = " || ".join(f"q.q{index}" for index in range(len(terms)))
    # Only generated aliases and numbers are formatted in; every value is bound.
    sql = (
        f"WITH q AS (SELECT {', '.join(term_queries)}), "  # noqa: S608
        "d AS MATERIALIZED (SELECT m.id, m.search_vector AS sv "
        "FROM memories_memory m "
        "WHERE m.tenant_id = %s AND m.user_id = %s AND m.status = 'active'"
        f"{extra}), "
        "n AS MATERIALIZED (SELECT count(*)::float AS total, "
        f"{', '.join(counts)} FROM d, q) "
        f"SELECT d.id FROM d, q, n WHERE d.sv @@ ({any_term}) "
        f"ORDER BY ({' + '.join(score_parts)}) DESC, d.id LIMIT %s"
    )
    return sql, [*params, tenant.pk, user_id, *extra_params, limit]


def _cosine(memory: Memory, vector: np.ndarray) -> float:
    stored = np.frombuffer(bytes(memory.embedding), dtype="<f4")
    if stored.shape != vector.shape:
        return 0.0
    denominator = float(np.linalg.norm(stored) * np.linalg.norm(vector)) or 1.0
    return float(stored @ vector) / denominator


def memory_search(
    *,
    tenant: Tenant,
    user_id: str,
    query: str,
    vector: np.ndarray,
    top_k: int,
    filters: SearchFilters | None = None,
) -> list[SearchHit]:
    """The user's memories most relevant to a query, by vector and keyword."""
    filters = filters or SearchFilters()
    candidates = max(settings.LTM_SEARCH_CANDIDATES, top_k)
    vector = np.asarray(vector, dtype=np.float32)
    store = get_vector_store()
    namespace = Namespace(tenant_id=tenant.pk, user_id=user_id)
    if store.supports_text_search:
        return _search_in_store(
            store=store,
            namespace=namespace,
            tenant=tenant,
            query=query,
            vector=vector,
            top_k=top_k,
            candidates=candidates,
            filters=filters,
        )
    vector_hits = store.query(namespace=namespace, vector=vector, top_k=candidates)
    keyword_ids = keyword_ranking(
        tenant=tenant, user_id=user_id, query=query, limit=candidates, filters=filters
    )
    rows = _filtered_rows(tenant, user_id, filters)
    vector_keys = [hit.key for hit in vector_hits]
    vector_scores = {hit.key: hit.score for hit in vector_hits}
    # Only ids for the fusion; full rows for the hits that are returned.
    candidates_found = rows.filter(
        Q(vector_key__in=vector_keys) | Q(pk__in=keyword_ids)
    ).values_list("pk", "vector_key", "source_message_id")
    key_of, source_of, id_of = {}, {}, {}
    for pk, key, source in candidates_found:
        key_of[pk] = str(key)
        id_of[str(key)] = pk
        source_of[pk] = source

    # Ranks count only memories that passed the filters.
    vector_ranked = [id_of[key] for key in vector_keys if key in id_of]
    keyword_ranked = [pk for pk in keyword_ids if pk in key_of]
    rrf_k = settings.LTM_SEARCH_RRF_K
    scores: dict[int, float] = {}
    vector_rank: dict[int, int] = {}
    keyword_rank: dict[int, int] = {}
    for rank, pk in enumerate(vector_ranked, start=1):
        vector_rank[pk] = rank
        scores[pk] = settings.LTM_SEARCH_VECTOR_WEIGHT / (rrf_k + rank)
    for rank, pk in enumerate(keyword_ranked, start=1):
        keyword_rank[pk] = rank
        scores[pk] = scores.get(pk, 0.0) + (
            settings.LTM_SEARCH_KEYWORD_WEIGHT / (rrf_k + rank)
        )
    ordered = sorted(scores, key=lambda pk: (-scores[pk], pk))
    return _hits(
        ordered=ordered,
        top_k=top_k,
        scores=scores,
        source_of=source_of,
        vector=vector,
        similarity_of=lambda pk: vector_scores.get(key_of[pk]),
        keyword_rank=keyword_rank,
        vector_rank=vector_rank,
    )


def _filtered_rows(tenant: Tenant, user_id: str, filters: SearchFilters):
    rows = Memory.objects.for_user(tenant, user_id).filter(status=Memory.Status.ACTIVE)
    if filters.happened_after is not None:
        rows = rows.filter(happened_at__gte=filters.happened_after)
    if filters.happened_before is not None:
        rows = rows.filter(happened_at__lt=filters.happened_before)
    if filters.speaker is not None:
        rows = rows.filter(speaker=filters.speaker)
    if filters.slot is not None:
        rows = rows.filter(slot=filters.slot)
    return rows


def _hits(
    *,
    ordered: list[int],
    top_k: int,
    scores: dict[int, float],
    source_of: dict[int, int | None],
    vector: np.ndarray,
    similarity_of,
    keyword_rank: dict[int, int],
    vector_rank: dict[int, int],
) -> list[SearchHit]:
    if settings.LTM_SEARCH_DIVERSIFY:
        ordered = _diversify_by_source(ordered, source_of)
    ordered = ordered[:top_k]
    memories = Memory.objects.prefetch_related("sources").in_bulk(ordered)
    hits = []
    for pk in ordered:
        memory = memories[pk]
        similarity = similarity_of(pk)
        hits.append(
            SearchHit(
                memory=memory,
                score=scores[pk],
                similarity=similarity
                if similarity is not None
                else _cosine(memory, vector),
                keyword_rank=keyword_rank.get(pk),
                vector_rank=vector_rank.get(pk),
            )
        )
    return hits


def store_filter(filters: SearchFilters) -> dict | None:
    """The search filters as a vector-store metadata filter."""
    conditions = []
    if filters.happened_after is not None:
        conditions.append(
            {"happened_at": {"$gte": int(filters.happened_after.timestamp())}}
        )
    if filters.happened_before is not None:
        conditions.append(
            {"happened_at": {"$lt": int(filters.happened_before.timestamp())}}
        )
    if filters.speaker is not None:
        conditions.append({"speaker": {"$eq": filters.speaker}})
    if filters.slot is not None:
        conditions.append({"slot": {"$eq": filters.slot}})
    if not conditions:
        return None
    return conditions[0] if len(conditions) == 1 else {"$and": conditions}


def _search_in_store(
    *,
    store,
    namespace: Namespace,
    tenant: Tenant,
    query: str,
    vector: np.ndarray,
    top_k: int,
    candidates: int,
    filters: SearchFilters,
) -> list[SearchHit]:
    """Hybrid search done by a store with its own full-text index (S3 Vectors).

    The store fuses BM25 over each memory's keyword document with vector
    similarity; the database still decides what is active and passes the filters.
    """
    fused = store.hybrid_query(
        namespace=namespace,
        vector=vector,
        text=query,
        top_k=candidates,
        where=store_filter(filters),
    )
    keys = [hit.key for hit in fused]
    found = _filtered_rows(tenant, namespace.user_id, filters).filter(
        vector_key__in=keys
    )
    id_of, source_of = {}, {}
    for pk, key, source in found.values_list("pk", "vector_key", "source_message_id"):
        id_of[str(key)] = pk
        source_of[pk] = source
    ordered = [id_of[key] for key in keys if key in id_of]
    rrf_k = settings.LTM_SEARCH_RRF_K
    scores = {pk: 1.0 / (rrf_k + rank) for rank, pk in enumerate(ordered, start=1)}
    return _hits(
        ordered=ordered,
        top_k=top_k,
        scores=scores,
        source_of=source_of,
        vector=vector,
        similarity_of=lambda pk: None,
        keyword_rank={},
        vector_rank={},
    )


def _diversify_by_source(
    ordered: list[int], source_of: dict[int, int | None]
) -> list[int]:
    """Put memories whose source message is already represented after the others.

    Several facts of one message add little to a short list; the slots go to other
    messages first (a simple form of maximal marginal relevance).
    """
    seen: set[int] = set()
    first, later = [], []
    for pk in ordered:
        source = source_of[pk]
        if source is not None and source in seen:
            later.append(pk)
        else:
            if source is not None:
                seen.add(source)
            first.append(pk)
    return first + later
