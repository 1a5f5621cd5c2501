"""Keyword ranking in the database's own full-text index.

SQLite: FTS5 with BM25 and the Porter stemmer, partitioned by (tenant, user).
PostgreSQL: a generated tsvector with a GIN index, ranked BM25-like with each
term's inverse document frequency counted over the user's memories.
"""

from django.conf import settings
from django.db import connection

from accounts.models import Tenant
from memories.search.filters import SearchFilters, filters_sql
from memories.text import query_terms


def sqlite_partition(tenant_id: int, user_id: str) -> str:
    # Must match the FTS triggers: 'p' || tenant_id || 'u' || lower(hex(user_id)).
    return f"p{tenant_id}u{user_id.encode().hex()}"


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
    extra, extra_params = filters_sql(filters, "m.")
    context_weight = float(settings.LTM_SEARCH_CONTEXT_WEIGHT)
    if connection.vendor == "sqlite":
        words = " OR ".join(f'"{term}"' for term in terms)
        match = f'partition : "{sqlite_partition(tenant.pk, user_id)}" AND ' + (
            f"{{body context}} : ({words})"
        )
        # Only numbers are formatted into the SQL; every value is bound.
        sql = (
            "SELECT f.rowid FROM memories_memory_fts f "  # noqa: S608
            "JOIN memories_memory m ON m.id = f.rowid "
            "WHERE memories_memory_fts MATCH %s AND m.tenant_id = %s "
            f"AND m.user_id = %s{extra} "
            f"ORDER BY bm25(memories_memory_fts, 0.0, 1.0, {context_weight}) "
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
            context_weight=context_weight,
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
