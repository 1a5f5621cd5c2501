"""Search filters: one definition, rendered for SQL, the ORM and vector stores."""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q


@dataclass(frozen=True)
class Condition:
    """One column compared with one value: "eq", "gte" or "lt"."""

    column: str
    operator: str
    value: object


_SQL_OPERATORS = {"eq": "=", "gte": ">=", "lt": "<"}
_ORM_LOOKUPS = {"eq": "", "gte": "__gte", "lt": "__lt"}
_STORE_OPERATORS = {"eq": "$eq", "gte": "$gte", "lt": "$lt"}


@dataclass(frozen=True)
class SearchFilters:
    """Conditions every returned memory meets."""

    happened_after: datetime | None = None
    happened_before: datetime | None = None
    speaker: str | None = None
    slot: str | None = None
    # "fact" or "episode"; None for both.
    kind: str | None = None
    # "user", "assistant" or "other": only what that side of the chat said.
    role: str | None = None

    def conditions(self) -> list[Condition]:
        found = []
        if self.happened_after is not None:
            found.append(Condition("happened_at", "gte", self.happened_after))
        if self.happened_before is not None:
            found.append(Condition("happened_at", "lt", self.happened_before))
        for column in ("speaker", "slot", "kind", "role"):
            value = getattr(self, column)
            if value is not None:
                found.append(Condition(column, "eq", value))
        return found


def filters_sql(filters: SearchFilters, column_prefix: str) -> tuple[str, list]:
    """` AND ...` clauses over a table's columns, with their bound values."""
    clauses, params = [], []
    for condition in filters.conditions():
        # Column names come from the dataclass above, never from a request.
        clauses.append(
            f" AND {column_prefix}{condition.column} "
            f"{_SQL_OPERATORS[condition.operator]} %s"
        )
        params.append(condition.value)
    return "".join(clauses), params


def filters_q(filters: SearchFilters) -> Q:
    """The filters as an ORM condition on Memory."""
    return Q(
        **{
            f"{condition.column}{_ORM_LOOKUPS[condition.operator]}": condition.value
            for condition in filters.conditions()
        }
    )


def filters_for_store(filters: SearchFilters) -> dict | None:
    """The filters as a vector-store metadata filter (times as epoch seconds)."""
    parts = []
    for condition in filters.conditions():
        value = condition.value
        if isinstance(value, datetime):
            value = int(value.timestamp())
        parts.append({condition.column: {_STORE_OPERATORS[condition.operator]: value}})
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else {"$and": parts}
