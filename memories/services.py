"""The memory pipeline: remember, recall, reply and forget, and the vector outbox.

Every path that changes memories (API, admin, management commands) goes through
these functions, so the audit table and the vector index change together.
"""

import hashlib
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Tenant
from memories.models import Memory, MemoryEvent, Message, VectorOperation
from memories.providers.embeddings import get_embedder
from memories.providers.llm import ExtractedFact, MemoryView, get_language_model
from memories.selectors import RecalledMemory, memory_recall
from memories.vectorstores import Namespace, VectorRecord, get_vector_store

logger = logging.getLogger(__name__)

ACTOR_API = "api"
# Candidates shown to the forget chooser.
FORGET_CANDIDATES = 20
# Near neighbours compared against each new fact.
NEIGHBOURS = 5


@dataclass(frozen=True)
class MemoryChange:
    """One change the pipeline made to a memory."""

    operation: str  # "add", "update" or "delete"
    memory: Memory
    previous_text: str = ""


@dataclass
class MessageOutcome:
    message: Message
    reply: str
    recalled: list[RecalledMemory]
    changes: list[MemoryChange] = field(default_factory=list)


@dataclass
class ForgetOutcome:
    message: Message
    reply: str
    forgotten: list[MemoryChange] = field(default_factory=list)


def content_hash(text: str) -> str:
    """Hash of a fact's text, insensitive to case, spacing and punctuation."""
    normalised = " ".join(re.findall(r"[\w']+", text.lower()))
    return hashlib.sha256(normalised.encode()).hexdigest()


def _vector_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").reshape(-1).tobytes()


def _view(recalled: RecalledMemory) -> MemoryView:
    return MemoryView(
        key=str(recalled.memory.vector_key),
        text=recalled.memory.text,
        score=recalled.score,
        happened_at=recalled.memory.happened_at,
        time_granularity=recalled.memory.time_granularity,
        slot=recalled.memory.slot,
    )


# --- writes of single memories ---------------------------------------------
def _enqueue_vector_sync(memory: Memory) -> None:
    operation = VectorOperation.objects.create(
        memory=memory, tenant_id=memory.tenant_id
    )
    transaction.on_commit(
        lambda: vector_operations_apply(operation_ids=[operation.pk]), robust=True
    )


@transaction.atomic
def memory_create(
    *,
    tenant: Tenant,
    user_id: str,
    fact: ExtractedFact,
    vector: np.ndarray,
    message: Message | None,
    actor: str,
) -> Memory:
    """Store a new memory, its history entry and its pending vector write."""
    embedder = get_embedder()
    memory = Memory.objects.create(
        tenant=tenant,
        user_id=user_id,
        text=fact.text,
        content_hash=content_hash(fact.text),
        slot=fact.slot,
        embedding_model=embedder.model_name,
        embedding_dimension=embedder.dimension,
        embedding=_vector_bytes(vector),
        source_message=message,
        happened_at=fact.happened_at or (message.sent_at if message else None),
        time_granularity=fact.time_granularity if fact.happened_at else "",
        updated_by=actor,
    )
    MemoryEvent.objects.create(
        memory=memory,
        action=MemoryEvent.Action.ADD,
        new_text=memory.text,
        actor=actor,
        message=message,
    )
    _enqueue_vector_sync(memory)
    return memory


@transaction.atomic
def memory_update(
    *,
    memory: Memory,
    fact: ExtractedFact,
    vector: np.ndarray,
    message: Message | None,
    actor: str,
    reason: str = "",
) -> str:
    """Replace a memory's text (the old text goes to history); returns the old text."""
    previous_text = memory.text
    memory.text = fact.text
    memory.content_hash = content_hash(fact.text)
    memory.embedding = _vector_bytes(vector)
    if message is not None:
        memory.source_message = message
        memory.happened_at = fact.happened_at or message.sent_at
        memory.time_granularity = fact.time_granularity if fact.happened_at else ""
    memory.updated_at = timezone.now()
    memory.updated_by = actor
    memory.save()
    MemoryEvent.objects.create(
        memory=memory,
        action=MemoryEvent.Action.UPDATE,
        old_text=previous_text,
        new_text=memory.text,
        actor=actor,
        reason=reason,
        message=message,
    )
    _enqueue_vector_sync(memory)
    return previous_text


@transaction.atomic
def memory_delete(*, memory: Memory, actor: str, reason: str = "") -> Memory:
    """Forget a memory: its vector, its text, its history's text and its source
    messages' text go; a tombstone without content stays."""
    memory = Memory.objects.select_for_update().get(pk=memory.pk)
    if memory.status == Memory.Status.DELETED:
        return memory
    source_messages = {
        message_id
        for message_id in MemoryEvent.objects.filter(memory=memory).values_list(
            "message_id", flat=True
        )
        if message_id is not None
    }
    if memory.source_message_id:
        source_messages.add(memory.source_message_id)
    now = timezone.now()
    # The messages a forgotten fact came from hold its words too.
    Message.objects.filter(pk__in=source_messages).update(text="", redacted_at=now)
    MemoryEvent.objects.filter(memory=memory).update(old_text="", new_text="")
    memory.text = ""
    memory.content_hash = ""
    memory.slot = ""
    memory.embedding = b""
    memory.status = Memory.Status.DELETED
    memory.updated_at = now
    memory.updated_by = actor
    memory.save()
    MemoryEvent.objects.create(
        memory=memory, action=MemoryEvent.Action.DELETE, actor=actor, reason=reason
    )
    _enqueue_vector_sync(memory)
    return memory


# --- the vector outbox -----------------------------------------------------
def _vector_metadata(memory: Memory) -> dict:
    return {
        "memory_id": memory.pk,
        "tenant_id": memory.tenant_id,
        "user_id": memory.user_id,
        "text": memory.text,
        "content_hash": memory.content_hash,
        "embedding_model": memory.embedding_model,
        "happened_at": memory.happened_at.isoformat() if memory.happened_at else None,
        "created_at": memory.created_at.isoformat(),
    }


def vector_operations_apply(
    *,
    operation_ids: list[int] | None = None,
    tenant: Tenant | None = None,
    limit: int = 1000,
) -> int:
    """Make the vector index match the rows named by pending outbox entries.

    Idempotent: each entry re-reads its memory and puts or deletes its vector by
    key. Returns how many entries were applied; failures stay pending.
    """
    pending = VectorOperation.objects.filter(applied_at__isnull=True)
    if operation_ids is not None:
        pending = pending.filter(pk__in=operation_ids)
    if tenant is not None:
        pending = pending.filter(tenant=tenant)
    operations = list(pending.order_by("pk").values_list("pk", "memory_id")[:limit])
    if not operations:
        return 0
    operation_pks = [pk for pk, _ in operations]
    store = get_vector_store()
    try:
        with transaction.atomic():
            # Holding the rows while the index is written keeps a concurrent
            # change to the same memory from being overtaken by this one.
            memories = Memory.objects.select_for_update().filter(
                pk__in={memory_id for _, memory_id in operations}
            )
            puts: dict[Namespace, list[VectorRecord]] = {}
            deletes: dict[Namespace, list[str]] = {}
            for memory in memories:
                namespace = Namespace(
                    tenant_id=memory.tenant_id, user_id=memory.user_id
                )
                if memory.is_active:
                    puts.setdefault(namespace, []).append(
                        VectorRecord(
                            key=str(memory.vector_key),
                            vector=np.frombuffer(bytes(memory.embedding), dtype="<f4"),
                            metadata=_vector_metadata(memory),
                        )
                    )
                else:
                    deletes.setdefault(namespace, []).append(str(memory.vector_key))
            for namespace, records in puts.items():
                store.put(namespace=namespace, records=records)
            for namespace, keys in deletes.items():
                store.delete(namespace=namespace, keys=keys)
            VectorOperation.objects.filter(pk__in=operation_pks).update(
                applied_at=timezone.now()
            )
    except Exception as exc:
        logger.warning("Vector operations %s left pending: %s", operation_pks, exc)
        for operation in VectorOperation.objects.filter(pk__in=operation_pks):
            operation.attempts += 1
            operation.last_error = str(exc)[:2000]
            operation.save(update_fields=["attempts", "last_error"])
        return 0
    return len(operations)


def vector_operations_retry(*, tenant: Tenant) -> int:
    """Apply a tenant's outbox entries left pending by an earlier failure."""
    if not VectorOperation.objects.filter(
        tenant=tenant, applied_at__isnull=True
    ).exists():
        return 0
    return vector_operations_apply(tenant=tenant)


# --- the pipeline ----------------------------------------------------------
def _remember(
    *,
    tenant: Tenant,
    user_id: str,
    message: Message,
    facts: list[ExtractedFact],
    vectors: np.ndarray,
    actor: str,
) -> list[MemoryChange]:
    """Decide add / update / nothing for each fact and write the result."""
    decisions: list[tuple[str, ExtractedFact, np.ndarray, Memory | None]] = []
    seen_hashes: set[str] = set()
    active = Memory.objects.for_user(tenant, user_id).filter(
        status=Memory.Status.ACTIVE
    )
    for fact, vector in zip(facts, vectors, strict=True):
        digest = content_hash(fact.text)
        if digest in seen_hashes or active.filter(content_hash=digest).exists():
            continue
        seen_hashes.add(digest)
        neighbours = memory_recall(
            tenant=tenant, user_id=user_id, vector=vector, top_k=NEIGHBOURS
        )
        if neighbours and neighbours[0].score >= settings.LTM_DUPLICATE_SIMILARITY:
            continue
        same_slot = (
            active.filter(slot=fact.slot).order_by("-updated_at").first()
            if fact.slot
            else None
        )
        if same_slot is not None:
            decisions.append(("update", fact, vector, same_slot))
        else:
            decisions.append(("add", fact, vector, None))

    changes = []
    with transaction.atomic():
        for operation, fact, vector, existing in decisions:
            if operation == "update":
                previous = memory_update(
                    memory=existing,
                    fact=fact,
                    vector=vector,
                    message=message,
                    actor=actor,
                    reason="superseded by a newer statement",
                )
                changes.append(MemoryChange("update", existing, previous))
            else:
                memory = memory_create(
                    tenant=tenant,
                    user_id=user_id,
                    fact=fact,
                    vector=vector,
                    message=message,
                    actor=actor,
                )
                changes.append(MemoryChange("add", memory))
    return changes


def message_handle(
    *,
    tenant: Tenant,
    user_id: str,
    text: str,
    sent_at: datetime | None = None,
    actor: str = ACTOR_API,
) -> MessageOutcome:
    """Handle one message of an end user: recall, remember, reply."""
    vector_operations_retry(tenant=tenant)
    sent_at = sent_at or timezone.now()
    llm = get_language_model()
    facts = llm.extract_facts(message=text, sent_at=sent_at)
    # One embedding call for the message (to recall with) and its facts.
    vectors = get_embedder().embed([text] + [fact.text for fact in facts])
    recalled = memory_recall(
        tenant=tenant,
        user_id=user_id,
        vector=vectors[0],
        top_k=settings.LTM_RECALL_TOP_K,
        min_score=settings.LTM_RECALL_MIN_SCORE,
    )
    with transaction.atomic():
        message = Message.objects.create(
            tenant=tenant, user_id=user_id, text=text, sent_at=sent_at
        )
        changes = _remember(
            tenant=tenant,
            user_id=user_id,
            message=message,
            facts=facts,
            vectors=vectors[1:],
            actor=actor,
        )
    reply = llm.reply(
        message=text,
        recalled=[_view(item) for item in recalled],
        remembered=[change.memory.text for change in changes],
    )
    return MessageOutcome(
        message=message, reply=reply, recalled=recalled, changes=changes
    )


def forget_handle(
    *, tenant: Tenant, user_id: str, text: str, actor: str = ACTOR_API
) -> ForgetOutcome:
    """Forget the memories a natural-language request refers to."""
    vector_operations_retry(tenant=tenant)
    llm = get_language_model()
    query = llm.forget_query(request=text)
    (vector,) = get_embedder().embed([query])
    candidates = memory_recall(
        tenant=tenant, user_id=user_id, vector=vector, top_k=FORGET_CANDIDATES
    )
    by_key = {str(item.memory.vector_key): item for item in candidates}
    chosen = [
        by_key[key]
        for key in dict.fromkeys(
            llm.choose_forgotten(
                request=text, candidates=[_view(item) for item in candidates]
            )
        )
        if key in by_key
    ]
    forgotten_views = [_view(item) for item in chosen]
    with transaction.atomic():
        # The request is kept as an event without its words: they name the fact.
        message = Message.objects.create(
            tenant=tenant,
            user_id=user_id,
            kind=Message.Kind.FORGET,
            text="",
            redacted_at=timezone.now(),
        )
        forgotten = []
        for item in chosen:
            previous_text = item.memory.text
            memory = memory_delete(
                memory=item.memory, actor=actor, reason="forget request"
            )
            forgotten.append(MemoryChange("delete", memory, previous_text))
    reply = llm.forget_reply(request=text, forgotten=forgotten_views)
    return ForgetOutcome(message=message, reply=reply, forgotten=forgotten)
