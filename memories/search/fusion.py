"""Hybrid recall: vector similarity fused with keyword relevance, over facts and
episodes together.

The vector store ranks the user's memories by cosine similarity; the database's
full-text index ranks them by keywords (or a store with its own text search does
both). Reciprocal rank fusion combines the rankings; the database then decides
what exists, is active and passes the filters.
"""

from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.db import connection

from accounts.models import Tenant
from memories.models import Memory
from memories.observability import traced
from memories.search.filters import SearchFilters, filters_for_store, filters_q
from memories.search.keyword import keyword_ranking
from memories.vectors import cosine, from_bytes
from memories.vectorstores import Namespace, get_vector_store


@dataclass(frozen=True)
class SearchHit:
    memory: Memory
    score: float  # the fused score; higher is better
    similarity: float  # cosine similarity of the memory to the query
    keyword_rank: int | None = None  # 1-based, None when no keyword matched
    vector_rank: int | None = None
    provenance: list = field(default_factory=list)


@dataclass(frozen=True)
class _Candidate:
    pk: int
    key: str
    source: int | None
    role: str
    kind: str


def _weight(candidate: "_Candidate") -> float:
    # What the assistant said is long and general; what the user said is what
    # a memory is for. Both are found, the user's first when they tie.
    weight = 1.0
    if candidate.role == "assistant":
        weight = settings.LTM_SEARCH_ASSISTANT_WEIGHT
    if candidate.kind == Memory.Kind.EPISODE:
        weight *= settings.LTM_SEARCH_EPISODE_WEIGHT
    return weight


def active_rows(tenant: Tenant, user_id: str, filters: SearchFilters):
    """The user's active memories that pass the filters."""
    return (
        Memory.objects.for_user(tenant, user_id)
        .filter(status=Memory.Status.ACTIVE)
        .filter(filters_q(filters))
    )


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
    rrf_k = settings.LTM_SEARCH_RRF_K
    if store.capabilities.text_search:
        # The store fuses BM25 over each memory's keyword document with vector
        # similarity (S3 Vectors); the database still decides what is active.
        fused = store.hybrid_query(
            namespace=namespace,
            vector=vector,
            text=query,
            top_k=candidates,
            where=filters_for_store(filters),
        )
        found = _candidates(tenant, user_id, filters, keys=[hit.key for hit in fused])
        by_key = {candidate.key: candidate for candidate in found}
        ordered = [by_key[hit.key] for hit in fused if hit.key in by_key]
        scores = {
            candidate.pk: _weight(candidate) / (rrf_k + rank)
            for rank, candidate in enumerate(ordered, start=1)
        }
        return _hits(
            candidates=ordered,
            scores=scores,
            top_k=top_k,
            vector=vector,
            similarity={},
            keyword_rank={},
            vector_rank={},
        )
    # One after the other: side by side in threads they measured slower at
    # 100,000 memories (31 against 26 ms), the keyword ranking's Python and the
    # vector scan's hand-back contending for the GIL and the memory bus.
    vector_hits = store.query(namespace=namespace, vector=vector, top_k=candidates)
    with traced("ltm.keyword_search", database=connection.vendor):
        keyword_ids = keyword_ranking(
            tenant=tenant,
            user_id=user_id,
            query=query,
            limit=candidates,
            filters=filters,
        )
    found = _candidates(
        tenant, user_id, filters, keys=[hit.key for hit in vector_hits], ids=keyword_ids
    )
    by_key = {candidate.key: candidate for candidate in found}
    by_pk = {candidate.pk: candidate for candidate in found}
    # Ranks count only memories that passed the filters.
    vector_ranked = [by_key[hit.key] for hit in vector_hits if hit.key in by_key]
    keyword_ranked = [by_pk[pk] for pk in keyword_ids if pk in by_pk]
    similarity = {
        by_key[hit.key].pk: hit.score for hit in vector_hits if hit.key in by_key
    }
    scores: dict[int, float] = {}
    vector_rank: dict[int, int] = {}
    keyword_rank: dict[int, int] = {}
    for rank, candidate in enumerate(vector_ranked, start=1):
        vector_rank[candidate.pk] = rank
        scores[candidate.pk] = settings.LTM_SEARCH_VECTOR_WEIGHT / (rrf_k + rank)
    for rank, candidate in enumerate(keyword_ranked, start=1):
        keyword_rank[candidate.pk] = rank
        scores[candidate.pk] = scores.get(candidate.pk, 0.0) + (
            settings.LTM_SEARCH_KEYWORD_WEIGHT / (rrf_k + rank)
        )
    for pk in scores:
        scores[pk] *= _weight(by_pk[pk])
    ordered = sorted((by_pk[pk] for pk in scores), key=lambda c: (-scores[c.pk], c.pk))
    return _hits(
        candidates=ordered,
        scores=scores,
        top_k=top_k,
        vector=vector,
        similarity=similarity,
        keyword_rank=keyword_rank,
        vector_rank=vector_rank,
    )


def _candidates(
    tenant: Tenant,
    user_id: str,
    filters: SearchFilters,
    *,
    keys: list[str],
    ids: list[int] = (),
) -> list[_Candidate]:
    """Only ids, sources and roles for the fusion; full rows for what is returned.

    Two lookups by primary key in one statement: joined by OR, the planner
    may walk every row of the user instead.
    """
    fields = ("pk", "vector_key", "source_message_id", "role", "kind")
    rows = active_rows(tenant, user_id, filters).order_by()
    by_key = rows.with_vector_keys(keys).values_list(*fields)
    by_id = rows.filter(pk__in=list(ids)).values_list(*fields)
    return [
        _Candidate(pk=pk, key=str(key), source=source, role=role, kind=kind)
        for pk, key, source, role, kind in by_key.union(by_id)
    ]


def _hits(
    *,
    candidates: list[_Candidate],
    scores: dict[int, float],
    top_k: int,
    vector: np.ndarray,
    similarity: dict[int, float],
    keyword_rank: dict[int, int],
    vector_rank: dict[int, int],
) -> list[SearchHit]:
    if settings.LTM_SEARCH_DIVERSIFY:
        candidates = _diversify_by_source(candidates)
    ordered = [candidate.pk for candidate in candidates[:top_k]]
    memories = Memory.objects.prefetch_related("sources").in_bulk(ordered)
    return [
        SearchHit(
            memory=memories[pk],
            score=scores[pk],
            similarity=similarity[pk]
            if pk in similarity
            else cosine(from_bytes(memories[pk].embedding), vector),
            keyword_rank=keyword_rank.get(pk),
            vector_rank=vector_rank.get(pk),
        )
        for pk in ordered
    ]


def _diversify_by_source(candidates: list[_Candidate]) -> list[_Candidate]:
    """Put memories whose source message is already represented after the others.

    Several memories of one message (its facts, its episode, its passages) add
    little to a short list; the places go to other messages first (a simple form
    of maximal marginal relevance).
    """
    seen: set[int] = set()
    first, later = [], []
    for candidate in candidates:
        if candidate.source is not None and candidate.source in seen:
            later.append(candidate)
        else:
            if candidate.source is not None:
                seen.add(candidate.source)
            first.append(candidate)
    return first + later
