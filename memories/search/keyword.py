"""Keyword ranking in the database's own full-text index, BM25-like, with each
term's weight counted over the one user's memories.

SQLite: FTS5 with the Porter stemmer, partitioned by (tenant, user). FTS5's own
bm25() counts how rare a word is over the whole table, every tenant's rows
included, so one tenant's data would move another's ranking, and it walks each
word's rows over the whole table to count them, so its cost would grow with
everyone's data. The same formula is therefore computed here from the user's
rows holding each word, with their lengths and repeats, and the user's own
weights.

PostgreSQL: a generated tsvector with a GIN index; the user's counts are read
first, then each memory scores the weights of the terms it holds, its own words
(weight A) counting fully and its context (weight B) by the context weight.

A user with few memories says little about which words are common, so the
counts are smoothed by a background of ordinary language: as if the user also
had LTM_SEARCH_BACKGROUND_DOCUMENTS documents of everyday text, in which each
word is as common as word frequency lists say (wordfreq, in
LTM_SEARCH_BACKGROUND_LANGUAGE). "really" then weighs little even in a user's
first messages, and a name the user says everywhere weighs little as ever.
"""

import heapq
import math
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache

from django.conf import settings
from django.db import connection

from accounts.models import Tenant
from memories.search.filters import SearchFilters, filters_sql
from memories.text import query_terms

# Words in one background document: about a memory's own words with its context.
BACKGROUND_DOCUMENT_WORDS = 100
# FTS5's floor for the weight of a term in most documents; used for both sides.
MINIMUM_TERM_WEIGHT = 1e-6


def sqlite_partition(tenant_id: int, user_id: str) -> str:
    # Must match the FTS triggers: 'p' || tenant_id || 'u' || lower(hex(user_id)).
    return f"p{tenant_id}u{user_id.encode().hex()}"


@lru_cache(maxsize=65536)
def background_share(term: str) -> float:
    """Share of everyday documents that hold the term (0 when none is set)."""
    language = settings.LTM_SEARCH_BACKGROUND_LANGUAGE
    if not language or settings.LTM_SEARCH_BACKGROUND_DOCUMENTS <= 0:
        return 0.0
    from wordfreq import word_frequency

    frequency = word_frequency(term, language)
    return 1.0 - math.exp(-frequency * BACKGROUND_DOCUMENT_WORDS)


def idf(*, total: float, matching: float) -> float:
    """BM25's inverse document frequency, as FTS5 computes it."""
    # Counts read by two statements may straddle another process's write.
    matching = min(matching, total)
    value = math.log((total - matching + 0.5) / (matching + 0.5))
    return value if value > 0 else MINIMUM_TERM_WEIGHT


def term_weight(term: str, *, total: int, matching: int) -> float:
    """How much a term counts in one user's memories: its idf over the user's
    `total` memories, `matching` of which hold it, plus the background."""
    background = max(0, settings.LTM_SEARCH_BACKGROUND_DOCUMENTS)
    return idf(
        total=total + background,
        matching=matching + background * background_share(term),
    )


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
    context_weight = float(settings.LTM_SEARCH_CONTEXT_WEIGHT)
    if connection.vendor == "sqlite":
        scores = _sqlite_scores(
            partition=sqlite_partition(tenant.pk, user_id),
            terms=terms,
            context_weight=context_weight,
        )

        def order(pk: int) -> tuple[float, int]:
            return -scores[pk], pk

        # The index holds only active memories; filters are the database's,
        # and may pass only some of the best.
        if filters.conditions() and scores:
            return _passing(sorted(scores, key=order), filters)[:limit]
        return heapq.nsmallest(limit, scores, key=order)
    if connection.vendor == "postgresql":
        return _postgres_ranking(
            tenant=tenant,
            user_id=user_id,
            terms=terms,
            limit=limit,
            filters=filters,
            context_weight=context_weight,
        )
    return []  # pragma: no cover - guarded by the migration


# FTS5's bm25() constants.
BM25_K1 = 1.2
BM25_B = 0.75
# Beyond the exact limit, a term in at most this many of the user's memories
# is counted as often as it repeats (highlight() marks each instance, about
# 8 us a row); in more, where it weighs little, once a field. Up to the limit
# every repeat is counted.
REPEATS_COUNTED_UP_TO = 256
INSTANCE_MARK = "\x01"
# Finding the user's rows holding a term walks the user's whole partition
# phrase (0.4 ms at 100,000 memories), once a term and field. When the user
# holds at least this share of the index (one large user, as when one person
# or agent is served), the partition is walked once for the rows holding any
# term, and each term's own list, cheap to walk, is read across the index.
LONE_USER_SHARE = 0.5


@dataclass
class _Holding:
    """The user's rows holding each term, from one statement."""

    user_total: int = 0
    average_length: float = 1.0
    # term index -> {row: its weighted count in the fields (1 a field so far)}
    weights: dict[int, dict[int, float]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    lengths: dict[int, int] = field(default_factory=dict)
    # The rows are read across the index, and kept when they are in `lengths`.
    across_index: bool = False


def _sqlite_scores(
    *, partition: str, terms: list[str], context_weight: float
) -> dict[int, float]:
    """Per-user BM25 over FTS5: bm25()'s formula with the user's weights.

    The user's count of memories comes from a table the triggers keep, the
    index's mean row length from FTS5's own record. One statement lists the
    rows holding each word in each field, with their lengths; a second counts
    each word's repeats in those rows. Up to LTM_SEARCH_EXACT_KEYWORD_MEMORIES
    memories every word and every repeat is counted, and the scores equal
    bm25()'s with the user's weights. Beyond, counting costs too much, so only
    the query's LTM_SEARCH_FAST_KEYWORD_TERMS words least common in everyday
    language are ranked, and a word in more than REPEATS_COUNTED_UP_TO of the
    user's memories, which weighs little, counts once a field. How the rows
    are listed depends on the user's share of the index (LONE_USER_SHARE); the
    scores do not.
    """
    table = "memories_memory_fts"
    user_rows = f'partition : "{partition}"'
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT documents FROM {table}_count WHERE partition = %s), "  # noqa: S608
            f"(SELECT block FROM {table}_data WHERE id = 1)",
            [partition],
        )
        user_total, averages = cursor.fetchone()
    user_total = user_total or 0
    index_rows, average_length = _averages(averages)
    holding = _Holding(
        user_total=user_total,
        average_length=average_length,
        across_index=user_total >= LONE_USER_SHARE * index_rows,
    )
    exact = user_total <= settings.LTM_SEARCH_EXACT_KEYWORD_MEMORIES
    if not exact:
        terms = _rarest(terms, settings.LTM_SEARCH_FAST_KEYWORD_TERMS)
    _rows_holding(table, user_rows, terms, context_weight, holding)
    _count_repeats(
        table,
        user_rows,
        terms,
        context_weight,
        holding,
        up_to=holding.user_total if exact else REPEATS_COUNTED_UP_TO,
    )
    scores: dict[int, float] = defaultdict(float)
    for index, weights in holding.weights.items():
        weight = term_weight(
            terms[index], total=holding.user_total, matching=len(weights)
        )
        for pk, frequency in weights.items():
            length = holding.lengths[pk] / holding.average_length
            norm = 1 - BM25_B + BM25_B * length
            scores[pk] += (
                weight * frequency * (BM25_K1 + 1) / (frequency + BM25_K1 * norm)
            )
    return scores


def _rarest(terms: list[str], count: int) -> list[str]:
    """The `count` terms least common in everyday language, in query order."""
    if len(terms) <= count:
        return terms
    kept = set(sorted(terms, key=background_share)[:count])
    return [term for term in terms if term in kept]


def _rows_holding(
    table: str,
    user_rows: str,
    terms: list[str],
    context_weight: float,
    holding: _Holding,
) -> None:
    """Each term's rows in each field, and their lengths, in one statement."""
    # (tag, what to select, the MATCH expression). Terms are quoted by
    # query_terms' alphabet (letters and digits only); only numbers are
    # formatted into the SQL, every MATCH expression is bound.
    sized = f"f.rowid, d.sz FROM {table} f JOIN {table}_docsize d ON d.id = f.rowid"
    plain = f"rowid, NULL FROM {table}"
    parts = []
    if holding.across_index:
        any_term = " OR ".join(f'"{term}"' for term in terms)
        parts.append((-1, sized, f"{user_rows} AND {{body context}} : ({any_term})"))
    for index, term in enumerate(terms):
        for field_number, field_name in enumerate(("body", "context")):
            tag = 2 * index + field_number
            if holding.across_index:
                parts.append((tag, plain, f'{field_name} : "{term}"'))
            else:
                parts.append((tag, sized, f'{user_rows} AND {field_name} : "{term}"'))
    arms = [
        f"SELECT {tag}, {selected} WHERE {table} MATCH %s"  # noqa: S608
        for tag, selected, _ in parts
    ]
    params = [match for _, _, match in parts]
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(arms), params)
        rows = cursor.fetchall()
    field_weights = (1.0, context_weight)
    lengths = holding.lengths
    for tag, row, sizes in rows:
        if tag == -1:
            lengths[row] = sum(_varints(sizes))
            continue
        if holding.across_index:
            if row not in lengths:
                continue  # another user's
        elif row not in lengths:
            lengths[row] = sum(_varints(sizes))
        weights = holding.weights[tag // 2]
        weights[row] = weights.get(row, 0.0) + field_weights[tag % 2]


def _count_repeats(
    table: str,
    user_rows: str,
    terms: list[str],
    context_weight: float,
    holding: _Holding,
    *,
    up_to: int,
) -> None:
    """Count each instance of the terms in at most `up_to` of the user's rows."""
    rare = [
        index for index, weights in holding.weights.items() if len(weights) <= up_to
    ]
    if not rare:
        return
    arms, params = [], []
    scope = "" if holding.across_index else f"{user_rows} AND "
    for index in rare:
        arms.append(
            f"SELECT {index}, rowid, highlight({table}, 1, %s, ''), "  # noqa: S608
            f"highlight({table}, 2, %s, '') FROM {table} WHERE {table} MATCH %s"
        )
        params.extend(
            [
                INSTANCE_MARK,
                INSTANCE_MARK,
                f'{scope}{{body context}} : "{terms[index]}"',
            ]
        )
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(arms), params)
        for index, pk, body, context in cursor.fetchall():
            if pk not in holding.lengths:
                continue  # another user's
            holding.weights[index][pk] = (body or "").count(
                INSTANCE_MARK
            ) + context_weight * (context or "").count(INSTANCE_MARK)


def _averages(block: bytes) -> tuple[int, float]:
    """FTS5's averages record: the table's row count, then its tokens in each
    field (empty before the first row); the rows and their mean length."""
    rows, *tokens = _varints(block) or [0]
    return rows, max(sum(tokens) / max(rows, 1), 1.0)


def _varints(blob: bytes) -> list[int]:
    """SQLite's variable-length integers, as FTS5 writes its sizes (seven
    bits a byte, high bit set on all but the last; counts stay far below the
    nine-byte form)."""
    if blob and max(blob) < 0x80:
        return list(blob)  # every size under 128: one byte each
    values, value = [], 0
    for byte in blob:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            values.append(value)
            value = 0
    return values


def _passing(ranked: list[int], filters: SearchFilters) -> list[int]:
    extra, extra_params = filters_sql(filters, "m.")
    placeholders = ", ".join(["%s"] * len(ranked))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT m.id FROM memories_memory m WHERE m.id IN ({placeholders})"  # noqa: S608
            f"{extra}",
            [*ranked, *extra_params],
        )
        passing = {row[0] for row in cursor.fetchall()}
    return [pk for pk in ranked if pk in passing]


def _postgres_ranking(
    *,
    tenant: Tenant,
    user_id: str,
    terms: list[str],
    limit: int,
    filters: SearchFilters,
    context_weight: float,
) -> list[int]:
    """ts_rank_cd knows nothing of how rare a word is, so each term's weight is
    computed from the user's counts, in the same statement that ranks.

    The GIN index finds the user's rows holding any of the terms once; the
    counts are taken over them, the user's total from the count the triggers
    keep, and the weights by term_weight's formula in SQL.
    """
    queries, query_params = [], []
    for index, term in enumerate(terms):
        queries.append(
            f"to_tsquery('english'::regconfig, %s) AS q{index}, "
            f"to_tsquery('english'::regconfig, %s) AS qa{index}, "
            f"to_tsquery('english'::regconfig, %s) AS qb{index}"
        )
        query_params.extend([term, f"{term}:A", f"{term}:B"])
    indexes = range(len(terms))
    holds = ", ".join(
        f"(m.search_vector @@ q.qa{i})::int AS a{i}, "
        f"(m.search_vector @@ q.qb{i})::int AS b{i}"
        for i in indexes
    )
    any_term = " || ".join(f"q.q{i}" for i in indexes)
    extra, extra_params = filters_sql(filters, "m.")
    counts = ", ".join(
        f"count(*) FILTER (WHERE a{i} + b{i} > 0) AS n{i}" for i in indexes
    )
    # term_weight: idf over the user's total plus the background documents,
    # the background's share of each term added to its count.
    background = max(0, settings.LTM_SEARCH_BACKGROUND_DOCUMENTS)
    weights, weight_params = [], []
    for i, term in enumerate(terms):
        weights.append(
            f"greatest(ln(greatest(total.n + %s - (c.n{i} + %s) + 0.5, 1e-12) "
            f"/ (c.n{i} + %s + 0.5)), {MINIMUM_TERM_WEIGHT})::float8 AS w{i}"
        )
        share = background * background_share(term)
        weight_params.extend([background, share, share])
    score = " + ".join(
        f"w.w{i} * (h.a{i} + {float(context_weight)}::float8 * h.b{i})" for i in indexes
    )
    # Only generated aliases and numbers are formatted in; every value is bound.
    statement = (
        f"WITH q AS (SELECT {', '.join(queries)}), "  # noqa: S608
        f"hits AS MATERIALIZED (SELECT m.id, (TRUE{extra}) AS passes, {holds} "
        "FROM memories_memory m, q WHERE m.tenant_id = %s AND m.user_id = %s "
        f"AND m.status = 'active' AND m.search_vector @@ ({any_term})), "
        "total AS (SELECT coalesce((SELECT documents FROM memories_keyword_count "
        "WHERE tenant_id = %s AND user_id = %s), 0)::float8 AS n), "
        f"c AS (SELECT {counts} FROM hits), "
        # Materialized, so that the weights are computed once, not per row.
        f"w AS MATERIALIZED (SELECT {', '.join(weights)} FROM total, c) "
        f"SELECT h.id FROM hits h, w WHERE h.passes "
        f"ORDER BY ({score}) DESC, h.id LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            statement,
            [
                *query_params,
                *extra_params,
                tenant.pk,
                user_id,
                tenant.pk,
                user_id,
                *weight_params,
                limit,
            ],
        )
        return [row[0] for row in cursor.fetchall()]
