"""Reads of the memory domain, always scoped to a tenant (and usually a user)."""

from dataclasses import dataclass

import numpy as np
from django.db.models import QuerySet

from accounts.models import Tenant
from memories.models import Memory
from memories.vectorstores import Namespace, get_vector_store

# Vectors of memories hidden or deleted a moment ago may still be in the index
# until their outbox entry is applied, so a query asks for a few more.
_OVERFETCH = 10


@dataclass(frozen=True)
class RecalledMemory:
    memory: Memory
    score: float


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
    vector: np.ndarray,
    top_k: int,
    min_score: float = -1.0,
) -> list[RecalledMemory]:
    """The user's active memories most similar to a vector, best first.

    The index gives keys and scores; the database decides what exists and is
    active, so a stale vector can never bring back a forgotten memory.
    """
    hits = get_vector_store().query(
        namespace=Namespace(tenant_id=tenant.pk, user_id=user_id),
        vector=vector,
        top_k=top_k + _OVERFETCH,
    )
    hits = [hit for hit in hits if hit.score >= min_score]
    if not hits:
        return []
    rows = {
        str(memory.vector_key): memory
        for memory in memory_list(tenant=tenant, user_id=user_id).filter(
            vector_key__in=[hit.key for hit in hits]
        )
    }
    recalled = [
        RecalledMemory(memory=rows[hit.key], score=hit.score)
        for hit in hits
        if hit.key in rows
    ]
    return recalled[:top_k]
