"""Reads of the memory domain, always scoped to a tenant (and usually a user)."""

import uuid

import numpy as np
from django.conf import settings
from django.db.models import Count, Max, Q, QuerySet

from accounts.models import Tenant
from memories.models import ErasureJob, ExportJob, Memory, Message
from memories.providers.embeddings import get_embedder
from memories.public_ids import message_pk
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


def _status_counts() -> dict:
    return {
        status: Count("pk", filter=Q(status=status)) for status in Memory.Status.values
    }


def end_users_list(*, tenant: Tenant, search: str = "") -> QuerySet:
    """A tenant's end users (those with memories, tombstones included), each with
    its memory count per status and when its last memory was stored: one
    aggregate query, ordered by user id."""
    memories = Memory.objects.for_tenant(tenant)
    if search:
        memories = memories.filter(user_id__icontains=search)
    return (
        memories.values("user_id")
        .annotate(**_status_counts(), total=Count("pk"), last_stored=Max("created_at"))
        .order_by("user_id")
    )


def tenant_memory_counts(*, tenant: Tenant) -> dict[str, int]:
    """How many memories a tenant has in each status."""
    return Memory.objects.for_tenant(tenant).aggregate(**_status_counts())


def tenant_message_count(*, tenant: Tenant) -> int:
    """How many messages a tenant's end users have sent (forget requests too)."""
    return Message.objects.for_tenant(tenant).count()


def message_status(*, tenant: Tenant, public_id) -> Message | None:
    """A tenant's message by the id its client was given, with the active
    memories that came from it (`memories_made`); None when there is none."""
    try:
        pk = message_pk(int(public_id))
    except (TypeError, ValueError):
        return None
    message = Message.objects.filter(
        tenant=tenant, pk=pk, kind=Message.Kind.MESSAGE
    ).first()
    if message is None:
        return None
    message.memories_made = list(
        Memory.objects.filter(
            tenant=tenant, source_message=message, status=Memory.Status.ACTIVE
        ).order_by("id")
    )
    return message


def erasure_job(*, tenant: Tenant, job_id) -> ErasureJob | None:
    """A tenant's erasure job by its id; None when there is none (or not its)."""
    return _job(ErasureJob, tenant, job_id)


def export_job(*, tenant: Tenant, job_id) -> ExportJob | None:
    """A tenant's export job by its id; None when there is none (or not its)."""
    return _job(ExportJob, tenant, job_id)


def _job(model, tenant: Tenant, job_id):
    try:
        return model.objects.filter(
            tenant=tenant, pk=str(uuid.UUID(str(job_id)))
        ).first()
    except ValueError:
        return None
