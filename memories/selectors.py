"""Reads of the memory domain, always scoped to a tenant (and usually a user)."""

import numpy as np
from django.conf import settings
from django.db.models import QuerySet

from accounts.models import Tenant
from memories.models import Memory
from memories.providers.embeddings import get_embedder
from memories.search import SearchFilters, SearchHit, memory_search


def memory_list(*, tenant: Tenant, user_id: str | None = None) -> QuerySet[Memory]:
    """A tenant's active memories, optionally of one end user."""
    memories = Memory.objects.for_tenant(tenant).filter(status=Memory.Status.ACTIVE)
    if user_id is not None:
        memories = memories.filter(user_id=user_id)
    return memories


def memory_recall(
    *,
    tenant: Tenant,
    user_id: str,
    query: str,
    vector: np.ndarray | None = None,
    top_k: int | None = None,
    filters: SearchFilters | None = None,
) -> list[SearchHit]:
    """Hybrid search over a user's memories (embeds the query if no vector given)."""
    if vector is None:
        (vector,) = get_embedder().embed([query])
    return memory_search(
        tenant=tenant,
        user_id=user_id,
        query=query,
        vector=vector,
        top_k=top_k or settings.LTM_RECALL_TOP_K,
        filters=filters,
    )
