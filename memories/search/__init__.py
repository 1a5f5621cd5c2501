"""Search over a user's memories: filters, keyword ranking, fusion."""

from memories.search.filters import SearchFilters
from memories.search.fusion import SearchHit, active_rows, memory_search
from memories.search.keyword import keyword_ranking

__all__ = [
    "SearchFilters",
    "SearchHit",
    "active_rows",
    "keyword_ranking",
    "memory_search",
]
