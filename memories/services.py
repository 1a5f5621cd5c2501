"""The memory pipeline: remember, recall, reply and forget, and the vector outbox.

Every path that changes memories (API, admin, management commands) goes through
these functions, so the audit table and the vector index change together.
"""

import hashlib
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Tenant
from accounts.services import usage_record
from memories.models import Memory, MemoryEvent, MemorySource, Message, VectorOperation
from memories.providers.embeddings import get_embedder
from memories.providers.llm import ExtractedFact, MemoryView, get_language_model
from memories.search import SearchHit, keyword_ranking
from memories.selectors import memory_recall
from memories.vectorstores import Namespace, VectorHit, VectorRecord, get_vector_store

logger = logging.getLogger(__name__)

ACTOR_API = "api"
ACTOR_IMPORT = "import"
# Candidates shown to the forget chooser.
FORGET_CANDIDATES = 20
# Neighbouring messages' words kept per memory for keyword search.
MAX_CONTEXT_CHARS = 2000


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
    recalled: list[SearchHit]
    changes: list[MemoryChange] = field(default_factory=list)
    # Language-model calls made for this message (CallRecord), with their tokens.
    calls: list = field(default_factory=list)


@dataclass
class ForgetOutcome:
    message: Message
    reply: str
    forgotten: list[MemoryChange] = field(default_factory=list)
    calls: list = field(default_factory=list)


@dataclass(frozen=True)
class IncomingMessage:
    """A message to remember, as a client sends it."""

    text: str
    sent_at: datetime
    role: str = "user"
    speaker: str = ""
    client_message_id: str = ""


@dataclass
class ImportOutcome:
    messages: list[Message]
    skipped_client_message_ids: list[str]
    changes: list[MemoryChange] = field(default_factory=list)


def content_hash(text: str) -> str:
    """Hash of a fact's text, insensitive to case, spacing and punctuation."""
    normalised = " ".join(re.findall(r"[\w']+", text.lower()))
    return hashlib.sha256(normalised.encode()).hexdigest()


def _vector_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").reshape(-1).tobytes()


def _view(hit: SearchHit) -> MemoryView:
    return MemoryView(
        key=str(hit.memory.vector_key),
        text=hit.memory.text,
        score=hit.similarity,
        happened_at=hit.memory.happened_at,
        time_granularity=hit.memory.time_granularity,
        slot=hit.memory.slot,
    )


def _spoken(message: Message) -> str:
    """A message's words as they appear in a neighbour's context."""
    if not message.text:
        return ""
    return f"{message.speaker}: {message.text}" if message.speaker else message.text


# --- writes of single memories ---------------------------------------------
_sync_batch: ContextVar[list[int] | None] = ContextVar("sync_batch", default=None)


# Outbox entries applied per vector-store round: two S3 Vectors batches of 500.
VECTOR_APPLY_CHUNK = 1000


def _apply_after_commit(operation_ids: list[int]) -> None:
    def apply() -> None:
        # In chunks: one transaction of row locks per chunk, however big the write.
        for start in range(0, len(operation_ids), VECTOR_APPLY_CHUNK):
            chunk = operation_ids[start : start + VECTOR_APPLY_CHUNK]
            vector_operations_apply(operation_ids=chunk, limit=len(chunk))

    transaction.on_commit(apply, robust=True)


@contextmanager
def vector_sync_batch() -> Iterator[None]:
    """Apply the outbox entries written inside the block in one go after commit
    (one batched write to the vector store instead of one per memory)."""
    if _sync_batch.get() is not None:
        # Nested in another batch: the entries go out with the outer batch's.
        yield
        return
    operation_ids: list[int] = []
    token = _sync_batch.set(operation_ids)
    try:
        yield
    finally:
        _sync_batch.reset(token)
    if operation_ids:
        _apply_after_commit(operation_ids)


def _enqueue_operations(operation_ids: list[int]) -> None:
    batch = _sync_batch.get()
    if batch is None:
        _apply_after_commit(operation_ids)
    else:
        batch.extend(operation_ids)


def _enqueue_vector_sync(memory: Memory) -> None:
    operation = VectorOperation.objects.create(
        memory=memory, tenant_id=memory.tenant_id
    )
    _enqueue_operations([operation.pk])


def _new_memory(
    *,
    tenant: Tenant,
    user_id: str,
    fact: ExtractedFact,
    vector: np.ndarray,
    message: Message | None,
    actor: str,
    context_text: str = "",
) -> Memory:
    embedder = get_embedder()
    return Memory(
        tenant=tenant,
        user_id=user_id,
        text=fact.text,
        content_hash=content_hash(fact.text),
        slot=fact.slot,
        speaker=message.speaker if message else "",
        context_text=context_text[:MAX_CONTEXT_CHARS],
        embedding_model=embedder.model_name,
        embedding_dimension=embedder.dimension,
        embedding=_vector_bytes(vector),
        source_message=message,
        happened_at=fact.happened_at or (message.sent_at if message else None),
        time_granularity=fact.time_granularity if fact.happened_at else "",
        updated_by=actor,
    )


@transaction.atomic
def memories_create(*, memories: list[Memory], actor: str) -> list[Memory]:
    """Store new memories (built unsaved) with their provenance, history entries
    and pending vector writes, in a few bulk queries."""
    if not memories:
        return memories
    Memory.objects.bulk_create(memories)
    MemorySource.objects.bulk_create(
        [
            MemorySource(memory=memory, message=memory.source_message)
            for memory in memories
            if memory.source_message is not None
        ]
    )
    MemoryEvent.objects.bulk_create(
        [
            MemoryEvent(
                memory=memory,
                action=MemoryEvent.Action.ADD,
                new_text=memory.text,
                actor=actor,
                message=memory.source_message,
            )
            for memory in memories
        ]
    )
    operations = VectorOperation.objects.bulk_create(
        [
            VectorOperation(memory=memory, tenant_id=memory.tenant_id)
            for memory in memories
        ]
    )
    _enqueue_operations([operation.pk for operation in operations])
    return memories


def memory_create(
    *,
    tenant: Tenant,
    user_id: str,
    fact: ExtractedFact,
    vector: np.ndarray,
    message: Message | None,
    actor: str,
    context_text: str = "",
) -> Memory:
    """Store a new memory, its provenance, history entry and pending vector write."""
    memory = _new_memory(
        tenant=tenant,
        user_id=user_id,
        fact=fact,
        vector=vector,
        message=message,
        actor=actor,
        context_text=context_text,
    )
    (memory,) = memories_create(memories=[memory], actor=actor)
    return memory


def memory_add_source(*, memory: Memory, message: Message) -> None:
    """Record that another message stated a memory's fact again."""
    MemorySource.objects.get_or_create(memory=memory, message=message)


@transaction.atomic
def memory_update(
    *,
    memory: Memory,
    fact: ExtractedFact,
    vector: np.ndarray,
    message: Message | None,
    actor: str,
    reason: str = "",
    context_text: str | None = None,
) -> str:
    """Replace a memory's text (the old text goes to history); returns the old text."""
    previous_text = memory.text
    memory.text = fact.text
    memory.content_hash = content_hash(fact.text)
    memory.embedding = _vector_bytes(vector)
    if message is not None:
        memory.source_message = message
        memory.speaker = message.speaker
        memory.happened_at = fact.happened_at or message.sent_at
        memory.time_granularity = fact.time_granularity if fact.happened_at else ""
        MemorySource.objects.get_or_create(memory=memory, message=message)
    if context_text is not None:
        memory.context_text = context_text[:MAX_CONTEXT_CHARS]
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
        valid_until=message.sent_at if message is not None else timezone.now(),
    )
    _enqueue_vector_sync(memory)
    return previous_text


def _redact_messages(*, tenant: Tenant, user_id: str, message_ids: set[int]) -> None:
    """Blank messages' text, and remove their words from neighbours' contexts."""
    now = timezone.now()
    for message in Message.objects.filter(pk__in=message_ids).exclude(text=""):
        spoken = _spoken(message)
        neighbours = Memory.objects.for_user(tenant, user_id).filter(
            context_text__contains=spoken
        )
        for neighbour in neighbours:
            neighbour.context_text = neighbour.context_text.replace(spoken, "").strip()
            neighbour.save(update_fields=["context_text"])
            # The store's copy of the keyword document must lose the words too.
            _enqueue_vector_sync(neighbour)
    Message.objects.filter(pk__in=message_ids).update(text="", redacted_at=now)


@transaction.atomic
def memory_delete(*, memory: Memory, actor: str, reason: str = "") -> Memory:
    """Forget a memory: its vector, its text, its history's text and its source
    messages' text go; a tombstone without content stays."""
    memory = Memory.objects.select_for_update().get(pk=memory.pk)
    if memory.status == Memory.Status.DELETED:
        return memory
    source_messages = set(
        MemorySource.objects.filter(memory=memory).values_list("message_id", flat=True)
    )
    source_messages |= {
        message_id
        for message_id in MemoryEvent.objects.filter(memory=memory).values_list(
            "message_id", flat=True
        )
        if message_id is not None
    }
    if memory.source_message_id:
        source_messages.add(memory.source_message_id)
    # The messages a forgotten fact came from hold its words too.
    _redact_messages(
        tenant=memory.tenant, user_id=memory.user_id, message_ids=source_messages
    )
    MemoryEvent.objects.filter(memory=memory).update(old_text="", new_text="")
    memory.text = ""
    memory.content_hash = ""
    memory.slot = ""
    memory.context_text = ""
    memory.embedding = b""
    memory.status = Memory.Status.DELETED
    memory.updated_at = timezone.now()
    memory.updated_by = actor
    memory.save()
    MemoryEvent.objects.create(
        memory=memory, action=MemoryEvent.Action.DELETE, actor=actor, reason=reason
    )
    _enqueue_vector_sync(memory)
    return memory


# --- the vector outbox -----------------------------------------------------
def _epoch_seconds(moment) -> int | None:
    return int(moment.timestamp()) if moment is not None else None


def _vector_metadata(memory: Memory) -> dict:
    """What the index keeps beside a memory's vector.

    Times are epoch seconds so that stores can filter them by range; keys whose
    value is unknown are left out (S3 Vectors has no null).
    """
    metadata = {
        "memory_id": memory.pk,
        "tenant_id": memory.tenant_id,
        "user_id": memory.user_id,
        "speaker": memory.speaker,
        "slot": memory.slot,
        "text": memory.text,
        "keywords": memory_keyword_document(memory),
        "content_hash": memory.content_hash,
        "embedding_model": memory.embedding_model,
        "happened_at": _epoch_seconds(memory.happened_at),
        "created_at": _epoch_seconds(memory.created_at),
    }
    return {key: value for key, value in metadata.items() if value not in (None, "")}


def memory_keyword_document(memory: Memory) -> str:
    """The words a store's own text search ranks a memory by.

    The same document the database's keyword index holds: who said it, the
    memory, and the neighbouring messages' words as context.
    """
    return " ".join(
        part for part in (memory.speaker, memory.text, memory.context_text) if part
    )


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
@dataclass
class _Pending:
    """A memory decided on in this batch, before its vector reaches the index."""

    memory: Memory
    vector: np.ndarray


def _context_for(messages: list[Message], index: int, before: list[Message]) -> str:
    """The words of the messages around one: a few before, one after."""
    earlier = (before + messages[:index])[-settings.LTM_CONTEXT_MESSAGES_BEFORE :]
    later = messages[index + 1 : index + 1 + settings.LTM_CONTEXT_MESSAGES_AFTER]
    return " ".join(
        _spoken(neighbour) for neighbour in (*earlier, *later) if neighbour
    ).strip()


# Stored memories compared with each new fact when the vector store is remote.
DUPLICATE_CANDIDATES = 5


def _nearest_stored(
    *, tenant: Tenant, user_id: str, texts: list[str], vectors: np.ndarray
) -> list[list[VectorHit]]:
    """Each new fact's most similar stored memory, to find near-duplicates.

    A local store answers all the facts in one pass. A remote one (S3 Vectors)
    would take one query per fact; a near-duplicate shares most of its words, so
    there the candidates come from the database's keyword index and their
    embeddings, kept in the audit rows, are compared here: no call to the store.
    """
    store = get_vector_store()
    if not getattr(store, "remote", False):
        return store.query_many(
            namespace=Namespace(tenant_id=tenant.pk, user_id=user_id),
            vectors=list(vectors),
            top_k=1,
        )
    candidates = [
        keyword_ranking(
            tenant=tenant, user_id=user_id, query=text, limit=DUPLICATE_CANDIDATES
        )
        for text in texts
    ]
    wanted = {pk for ids in candidates for pk in ids}
    stored = {
        pk: (str(key), np.frombuffer(bytes(embedding), dtype="<f4"))
        for pk, key, embedding in Memory.objects.filter(pk__in=wanted).values_list(
            "pk", "vector_key", "embedding"
        )
    }
    nearest: list[list[VectorHit]] = []
    for ids, vector in zip(candidates, vectors, strict=True):
        scored = [
            VectorHit(key=stored[pk][0], score=_cosine_of(stored[pk][1], vector))
            for pk in ids
            if pk in stored and stored[pk][1].shape == np.shape(vector)
        ]
        nearest.append(sorted(scored, key=lambda hit: -hit.score)[:1])
    return nearest


def _cosine_of(stored: np.ndarray, vector: np.ndarray) -> float:
    denominator = float(np.linalg.norm(stored) * np.linalg.norm(vector)) or 1.0
    return float(stored @ vector) / denominator


def _remember(  # noqa: C901 - one decision per fact, kept in one place
    *,
    tenant: Tenant,
    user_id: str,
    messages: list[Message],
    facts: list[list[ExtractedFact]],
    vectors: np.ndarray,
    actor: str,
) -> list[MemoryChange]:
    """Decide add / update / nothing for each fact of each message, and write it.

    Runs inside the caller's transaction. A fact already stored (same words or a
    near-identical vector) adds its message to that memory's provenance; a fact of
    a slot the speaker has (home, job...) replaces their old memory.
    """
    flat = [
        (message_index, fact)
        for message_index, message_facts in enumerate(facts)
        for fact in message_facts
    ]
    if not flat:
        return []
    active = Memory.objects.for_user(tenant, user_id).filter(
        status=Memory.Status.ACTIVE
    )
    neighbours = _nearest_stored(
        tenant=tenant,
        user_id=user_id,
        texts=[fact.text for _, fact in flat],
        vectors=vectors,
    )
    before = list(
        Message.objects.for_user(tenant, user_id)
        .filter(kind=Message.Kind.MESSAGE, sent_at__lte=messages[0].sent_at)
        .exclude(pk__in=[message.pk for message in messages])
        .order_by("-sent_at", "-id")[: settings.LTM_CONTEXT_MESSAGES_BEFORE]
    )[::-1]
    threshold = settings.LTM_DUPLICATE_SIMILARITY
    by_hash: dict[str, Memory] = {
        memory.content_hash: memory
        for memory in active.filter(
            content_hash__in={content_hash(fact.text) for _, fact in flat}
        )
    }
    by_slot: dict[tuple[str, str], Memory] = {}
    decided: list[_Pending] = []
    new: list[Memory] = []
    repeats: list[tuple[Memory, Message]] = []
    changes: list[MemoryChange] = []

    def store_new() -> None:
        memories_create(memories=new, actor=actor)
        new.clear()

    for (message_index, fact), vector, nearest in zip(
        flat, vectors, neighbours, strict=True
    ):
        message = messages[message_index]
        digest = content_hash(fact.text)
        same = by_hash.get(digest)
        if same is None and decided:
            similarities = np.stack([item.vector for item in decided]) @ vector
            best = int(np.argmax(similarities))
            if similarities[best] >= threshold:
                same = decided[best].memory
        if same is None and nearest and nearest[0].score >= threshold:
            same = active.filter(vector_key=nearest[0].key).first()
        if same is not None:
            repeats.append((same, message))
            continue
        context_text = _context_for(messages, message_index, before)
        previous = None
        if fact.slot:
            # A slot is one person's: Tomas's home never replaces Rosa's.
            slot_key = (message.speaker, fact.slot)
            previous = by_slot.get(slot_key) or (
                active.filter(slot=fact.slot, speaker=message.speaker)
                .order_by("-updated_at")
                .first()
            )
        if previous is not None:
            if previous.pk is None:
                store_new()
            old_text = memory_update(
                memory=previous,
                fact=fact,
                vector=vector,
                message=message,
                actor=actor,
                reason="superseded by a newer statement",
                context_text=context_text,
            )
            changes.append(MemoryChange("update", previous, old_text))
            memory = previous
        else:
            memory = _new_memory(
                tenant=tenant,
                user_id=user_id,
                fact=fact,
                vector=vector,
                message=message,
                actor=actor,
                context_text=context_text,
            )
            new.append(memory)
            changes.append(MemoryChange("add", memory))
        by_hash[digest] = memory
        if fact.slot:
            by_slot[(message.speaker, fact.slot)] = memory
        decided.append(_Pending(memory=memory, vector=np.asarray(vector)))
    store_new()
    MemorySource.objects.bulk_create(
        [MemorySource(memory=memory, message=message) for memory, message in repeats],
        ignore_conflicts=True,
    )
    return changes


def _link_to_previous(*, tenant: Tenant, user_id: str, messages: list[Message]) -> None:
    """Add new messages' first words to the context of the previous message's
    memories (the next message often answers or explains the previous one)."""
    spoken = _spoken(messages[0])
    if not spoken:
        return
    previous = (
        Message.objects.for_user(tenant, user_id)
        .filter(kind=Message.Kind.MESSAGE, sent_at__lte=messages[0].sent_at)
        .exclude(pk__in=[message.pk for message in messages])
        .order_by("-sent_at", "-id")
        .first()
    )
    if previous is None:
        return
    for memory in Memory.objects.filter(
        source_message=previous, status=Memory.Status.ACTIVE
    ):
        if spoken not in memory.context_text:
            memory.context_text = f"{memory.context_text} {spoken}".strip()[
                :MAX_CONTEXT_CHARS
            ]
            memory.save(update_fields=["context_text"])
            _enqueue_vector_sync(memory)


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
    if llm.consolidates:
        return _message_handle_with_model(
            tenant=tenant,
            user_id=user_id,
            text=text,
            sent_at=sent_at,
            actor=actor,
            llm=llm,
        )
    facts = llm.extract_facts(message=text, sent_at=sent_at)
    # One embedding call for the message (to recall with) and its facts.
    vectors = get_embedder().embed([text] + [fact.text for fact in facts])
    hits = memory_recall(tenant=tenant, user_id=user_id, query=text, vector=vectors[0])
    recalled = _related(hits)
    with transaction.atomic(), vector_sync_batch():
        message = Message.objects.create(
            tenant=tenant, user_id=user_id, text=text, sent_at=sent_at
        )
        _link_to_previous(tenant=tenant, user_id=user_id, messages=[message])
        changes = _remember(
            tenant=tenant,
            user_id=user_id,
            messages=[message],
            facts=[facts],
            vectors=vectors[1:],
            actor=actor,
        )
    reply = llm.reply(
        message=text,
        recalled=[_view(hit) for hit in recalled],
        remembered=[change.memory.text for change in changes],
    )
    return MessageOutcome(
        message=message, reply=reply, recalled=recalled, changes=changes
    )


def _related(hits: list[SearchHit]) -> list[SearchHit]:
    # A keyword match counts as related; otherwise the meaning must be close.
    return [
        hit
        for hit in hits
        if hit.keyword_rank is not None
        or hit.similarity >= settings.LTM_RECALL_MIN_SCORE
    ]


# Words of a message that asks to forget, or says a memory was never true: only
# then may the memory call delete (a memory's own text cannot ask for it).
_DELETE_INTENT = re.compile(
    r"\b(forget|delete|remove|erase|never\s+(?:was|were|did|had|have|said)|"
    r"(?:is|was|that's|that\s+is)\s+(?:not|n't)\s+true|wrong)\b",
    re.IGNORECASE,
)


def _message_handle_with_model(
    *,
    tenant: Tenant,
    user_id: str,
    text: str,
    sent_at: datetime,
    actor: str,
    llm,
) -> MessageOutcome:
    """One memory call plans the changes, one more call replies."""
    from memories.providers.llm_chat import RecentMessage

    calls: list = []
    embedder = get_embedder()
    query_vector = embedder.embed([text])[0]
    related_count = max(settings.LTM_LLM_RELATED_MEMORIES, settings.LTM_RECALL_TOP_K)
    hits = memory_recall(
        tenant=tenant,
        user_id=user_id,
        query=text,
        vector=query_vector,
        top_k=related_count,
    )
    recalled = _related(hits[: settings.LTM_RECALL_TOP_K])
    recent = [
        RecentMessage(role=item.role, text=item.text, sent_at=item.sent_at)
        for item in Message.objects.for_user(tenant, user_id)
        .filter(kind=Message.Kind.MESSAGE)
        .exclude(text="")
        .order_by("-sent_at", "-id")[: settings.LTM_LLM_RECENT_MESSAGES]
    ][::-1]
    plan = llm.plan_memory(
        message=text,
        sent_at=sent_at,
        recent=recent,
        related=[_view(hit) for hit in hits],
        calls=calls,
    )
    facts = llm.extract_facts(message=text, sent_at=sent_at) if plan is None else []
    planned_texts = (
        [fact.text for fact in facts]
        if plan is None
        else [op.fact.text for op in plan.operations if op.fact is not None]
    )
    vectors = embedder.embed(planned_texts) if planned_texts else np.zeros((0, 0))
    with transaction.atomic(), vector_sync_batch():
        message = Message.objects.create(
            tenant=tenant, user_id=user_id, text=text, sent_at=sent_at
        )
        _link_to_previous(tenant=tenant, user_id=user_id, messages=[message])
        if plan is None:
            # The model could not say: the rules remember instead.
            changes = _remember(
                tenant=tenant,
                user_id=user_id,
                messages=[message],
                facts=[facts],
                vectors=vectors,
                actor=actor,
            )
        else:
            changes = _apply_plan(
                tenant=tenant,
                user_id=user_id,
                message=message,
                plan=plan,
                vectors=vectors,
                actor=f"{actor}:{llm.name}",
                deletes_allowed=bool(_DELETE_INTENT.search(text)),
            )
    reply = llm.reply(
        message=text,
        recalled=[_view(hit) for hit in recalled],
        remembered=[change.memory.text for change in changes if change.memory.text],
        calls=calls,
    )
    _record_usage(tenant, calls)
    return MessageOutcome(
        message=message, reply=reply, recalled=recalled, changes=changes, calls=calls
    )


def _apply_plan(
    *,
    tenant: Tenant,
    user_id: str,
    message: Message,
    plan,
    vectors: np.ndarray,
    actor: str,
    deletes_allowed: bool,
) -> list[MemoryChange]:
    """Write a model's memory operations; runs inside the caller's transaction."""
    active = Memory.objects.for_user(tenant, user_id).filter(
        status=Memory.Status.ACTIVE
    )
    targets = {
        str(memory.vector_key): memory
        for memory in active.filter(
            vector_key__in=[op.key for op in plan.operations if op.key]
        )
    }
    before = list(
        Message.objects.for_user(tenant, user_id)
        .filter(kind=Message.Kind.MESSAGE, sent_at__lte=message.sent_at)
        .exclude(pk=message.pk)
        .order_by("-sent_at", "-id")[: settings.LTM_CONTEXT_MESSAGES_BEFORE]
    )[::-1]
    context_text = _context_for([message], 0, before)
    changes: list[MemoryChange] = []
    new: list[Memory] = []
    by_hash: dict[str, Memory] = {}
    vector_index = 0
    touched: set[str] = set()
    for op in plan.operations:
        vector = None
        if op.fact is not None:
            vector = vectors[vector_index]
            vector_index += 1
        if op.action == "delete":
            memory = targets.get(op.key)
            if memory is None or op.key in touched:
                continue
            if not deletes_allowed:
                logger.warning(
                    "Ignored a delete of memory %s: the message does not ask for it.",
                    memory.pk,
                )
                continue
            previous_text = memory.text
            memory_delete(memory=memory, actor=actor, reason="the user said so")
            touched.add(op.key)
            changes.append(MemoryChange("delete", memory, previous_text))
            continue
        digest = content_hash(op.fact.text)
        if op.action == "update":
            memory = targets.get(op.key)
            if memory is None or op.key in touched:
                continue
            if memory.content_hash == digest:
                MemorySource.objects.get_or_create(memory=memory, message=message)
                continue
            old_text = memory_update(
                memory=memory,
                fact=op.fact,
                vector=vector,
                message=message,
                actor=actor,
                reason="superseded by a newer statement",
                context_text=context_text,
            )
            touched.add(op.key)
            changes.append(MemoryChange("update", memory, old_text))
            continue
        same = by_hash.get(digest) or active.filter(content_hash=digest).first()
        if same is not None:
            # Already known: this message becomes one more source of it.
            if same.pk is not None:
                MemorySource.objects.get_or_create(memory=same, message=message)
            continue
        memory = _new_memory(
            tenant=tenant,
            user_id=user_id,
            fact=op.fact,
            vector=vector,
            message=message,
            actor=actor,
            context_text=context_text,
        )
        by_hash[digest] = memory
        new.append(memory)
        changes.append(MemoryChange("add", memory))
    memories_create(memories=new, actor=actor)
    return changes


def _record_usage(tenant: Tenant, calls: list) -> None:
    usage_record(
        tenant=tenant,
        calls=len(calls),
        input_tokens=sum(call.input_tokens for call in calls),
        output_tokens=sum(call.output_tokens for call in calls),
    )


def messages_import(
    *,
    tenant: Tenant,
    user_id: str,
    incoming: list[IncomingMessage],
    actor: str = ACTOR_IMPORT,
) -> ImportOutcome:
    """Remember a batch of past messages, without replies.

    Idempotent on client message ids: messages already imported are skipped.
    """
    vector_operations_retry(tenant=tenant)
    ids = [item.client_message_id for item in incoming if item.client_message_id]
    known = set(
        Message.objects.for_user(tenant, user_id)
        .filter(client_message_id__in=ids)
        .values_list("client_message_id", flat=True)
    )
    fresh = [item for item in incoming if item.client_message_id not in known]
    llm = get_language_model()
    facts = [
        []
        if item.role == "assistant"
        else llm.extract_facts(
            message=item.text, sent_at=item.sent_at, speaker=item.speaker
        )
        for item in fresh
    ]
    # The speaker's name is part of what is embedded: questions name people.
    texts = [
        f"{item.speaker}: {fact.text}" if item.speaker else fact.text
        for item, message_facts in zip(fresh, facts, strict=True)
        for fact in message_facts
    ]
    vectors = get_embedder().embed(texts)
    with transaction.atomic(), vector_sync_batch():
        messages = Message.objects.bulk_create(
            [
                Message(
                    tenant=tenant,
                    user_id=user_id,
                    text=item.text,
                    role=item.role,
                    speaker=item.speaker,
                    client_message_id=item.client_message_id,
                    sent_at=item.sent_at,
                )
                for item in fresh
            ]
        )
        if messages:
            _link_to_previous(tenant=tenant, user_id=user_id, messages=messages)
        changes = (
            _remember(
                tenant=tenant,
                user_id=user_id,
                messages=messages,
                facts=facts,
                vectors=vectors,
                actor=actor,
            )
            if messages
            else []
        )
    return ImportOutcome(
        messages=messages,
        skipped_client_message_ids=[
            item.client_message_id
            for item in incoming
            if item.client_message_id in known
        ],
        changes=changes,
    )


def forget_handle(
    *, tenant: Tenant, user_id: str, text: str, actor: str = ACTOR_API
) -> ForgetOutcome:
    """Forget the memories a natural-language request refers to."""
    vector_operations_retry(tenant=tenant)
    llm = get_language_model()
    calls: list = []
    query = llm.forget_query(request=text)
    candidates = memory_recall(
        tenant=tenant, user_id=user_id, query=query, top_k=FORGET_CANDIDATES
    )
    if llm.consolidates:
        # A model sees only memories related to the request: whatever a memory's
        # text says, an unrelated memory cannot be chosen.
        candidates = [
            hit
            for hit in candidates
            if hit.keyword_rank is not None
            or hit.similarity >= settings.LTM_LLM_FORGET_MIN_SCORE
        ]
    by_key = {str(hit.memory.vector_key): hit for hit in candidates}
    chosen = [
        by_key[key]
        for key in dict.fromkeys(
            llm.choose_forgotten(
                request=text,
                candidates=[_view(hit) for hit in candidates],
                calls=calls,
            )
        )
        if key in by_key
    ]
    forgotten_views = [_view(hit) for hit in chosen]
    with transaction.atomic(), vector_sync_batch():
        # The request is kept as an event without its words: they name the fact.
        message = Message.objects.create(
            tenant=tenant,
            user_id=user_id,
            kind=Message.Kind.FORGET,
            text="",
            redacted_at=timezone.now(),
        )
        forgotten = []
        for hit in chosen:
            previous_text = hit.memory.text
            memory = memory_delete(
                memory=hit.memory, actor=actor, reason="forget request"
            )
            forgotten.append(MemoryChange("delete", memory, previous_text))
    reply = llm.forget_reply(request=text, forgotten=forgotten_views)
    _record_usage(tenant, calls)
    return ForgetOutcome(message=message, reply=reply, forgotten=forgotten, calls=calls)


# --- moderation ------------------------------------------------------------
# What support staff do to a memory from the admin. Each action records the
# staff member and a required reason in the memory's history and reaches the
# vector store through the outbox, like every other write.
STAFF_ACTOR_PREFIX = "staff:"
REASON_MAX_CHARS = MemoryEvent._meta.get_field("reason").max_length
# The statuses each action applies to; any other is refused.
HIDE_APPLIES_TO = frozenset({Memory.Status.ACTIVE})
RESTORE_APPLIES_TO = frozenset({Memory.Status.HIDDEN})
EDIT_APPLIES_TO = frozenset({Memory.Status.ACTIVE, Memory.Status.HIDDEN})
DELETE_APPLIES_TO = frozenset({Memory.Status.ACTIVE, Memory.Status.HIDDEN})


class ModerationError(Exception):
    """A moderation action the memory's state, or the input, does not allow."""


@dataclass
class ModerationOutcome:
    """What one moderation action did to several memories."""

    changed: list[Memory] = field(default_factory=list)
    # Memories the action did not apply to (already hidden, deleted...), with why.
    refused: list[tuple[Memory, str]] = field(default_factory=list)


def staff_actor(username: str) -> str:
    """How a staff member is named in a memory's history."""
    return f"{STAFF_ACTOR_PREFIX}{username}"


def _required_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ModerationError("A reason is required.")
    if len(reason) > REASON_MAX_CHARS:
        raise ModerationError(f"A reason is at most {REASON_MAX_CHARS} characters.")
    return reason


def _locked_for(memory: Memory, *, allowed: frozenset[str], refusal: str) -> Memory:
    """The memory's row, locked for the rest of the transaction, if its status
    is one the action applies to."""
    locked = Memory.objects.select_for_update().get(pk=memory.pk)
    if locked.status not in allowed:
        raise ModerationError(f"Memory {locked.pk} is {locked.status}: {refusal}")
    return locked


def _status_change(
    memory: Memory, *, status: str, action: str, actor: str, reason: str
) -> Memory:
    memory.status = status
    memory.updated_at = timezone.now()
    memory.updated_by = actor
    memory.save(update_fields=["status", "updated_at", "updated_by"])
    MemoryEvent.objects.create(memory=memory, action=action, actor=actor, reason=reason)
    # Applied after commit: the vector is deleted unless the row is active.
    _enqueue_vector_sync(memory)
    return memory


def memory_hide(*, memory: Memory, actor: str, reason: str) -> Memory:
    """Hide a memory: kept with its text and history but never recalled or
    searched; its vector is deleted through the outbox."""
    reason = _required_reason(reason)
    with transaction.atomic(), vector_sync_batch():
        locked = _locked_for(
            memory,
            allowed=HIDE_APPLIES_TO,
            refusal="only an active memory can be hidden.",
        )
        return _status_change(
            locked,
            status=Memory.Status.HIDDEN,
            action=MemoryEvent.Action.HIDE,
            actor=actor,
            reason=reason,
        )


def memory_restore(*, memory: Memory, actor: str, reason: str) -> Memory:
    """Bring a hidden memory back: recalled again, its vector put again from the
    row through the outbox."""
    reason = _required_reason(reason)
    with transaction.atomic(), vector_sync_batch():
        locked = _locked_for(
            memory,
            allowed=RESTORE_APPLIES_TO,
            refusal="only a hidden memory can be restored.",
        )
        return _status_change(
            locked,
            status=Memory.Status.ACTIVE,
            action=MemoryEvent.Action.RESTORE,
            actor=actor,
            reason=reason,
        )


def _embedded_text(speaker: str, text: str) -> str:
    # As the pipeline embeds a fact: with its speaker's name when one is known.
    return f"{speaker}: {text}" if speaker else text


def memory_edit(*, memory: Memory, text: str, actor: str, reason: str) -> Memory:
    """Correct a memory's text: re-embedded, the old text kept in history, the
    vector rewritten through the outbox (a hidden memory stays without one)."""
    reason = _required_reason(reason)
    text = text.strip()
    if not text:
        raise ModerationError("The new text is empty; delete the memory instead.")
    refusal = "a deleted memory cannot be edited."
    if memory.status not in EDIT_APPLIES_TO:
        # Refused before embedding; checked again below under the row lock.
        raise ModerationError(f"Memory {memory.pk} is {memory.status}: {refusal}")
    if text == memory.text:
        raise ModerationError("The text is unchanged.")
    (vector,) = get_embedder().embed([_embedded_text(memory.speaker, text)])
    with transaction.atomic(), vector_sync_batch():
        locked = _locked_for(memory, allowed=EDIT_APPLIES_TO, refusal=refusal)
        memory_update(
            memory=locked,
            fact=ExtractedFact(text=text, slot=locked.slot),
            vector=vector,
            message=None,
            actor=actor,
            reason=reason,
        )
        return locked


def memory_delete_by_staff(*, memory: Memory, actor: str, reason: str) -> Memory:
    """`memory_delete` for support staff: a reason is required, and a memory
    already deleted is refused rather than silently left as it is."""
    reason = _required_reason(reason)
    with transaction.atomic(), vector_sync_batch():
        locked = _locked_for(
            memory,
            allowed=DELETE_APPLIES_TO,
            refusal="it is already deleted.",
        )
        return memory_delete(memory=locked, actor=actor, reason=reason)


def memories_moderate(
    *,
    memories: Iterable[Memory],
    action: Callable[..., Memory],
    actor: str,
    reason: str,
) -> ModerationOutcome:
    """Apply one moderation action (`memory_hide`, `memory_restore` or
    `memory_delete_by_staff`) to several memories in one transaction, with one
    batched write to the vector store; memories it does not apply to are
    left as they are and reported."""
    reason = _required_reason(reason)
    outcome = ModerationOutcome()
    with transaction.atomic(), vector_sync_batch():
        for memory in memories:
            try:
                changed = action(memory=memory, actor=actor, reason=reason)
            except ModerationError as refusal:
                outcome.refused.append((memory, str(refusal)))
            else:
                outcome.changed.append(changed)
    return outcome
