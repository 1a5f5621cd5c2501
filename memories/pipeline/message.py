"""One message of an end user: recall, remember (facts and its episode), reply."""

import logging
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError

from accounts.models import Tenant
from accounts.services import usage_record
from memories.models import Memory, Message
from memories.observability import count_model_calls
from memories.outbox import vector_operations_retry, vector_sync_batch
from memories.pipeline.apply import EpisodeDraft, MemoryChange, apply
from memories.pipeline.context import (
    context_for,
    known_of,
    messages_before,
    rules_operations,
    stored_for,
)
from memories.pipeline.decide import (
    PlannedChange,
    Proposal,
    decide_plan,
)
from memories.pipeline.embedding import embed_all, message_passages
from memories.pipeline.pending import memory_is_async, remember_pending
from memories.providers.llm import (
    ExtractedFact,
    LanguageModel,
    MemoryView,
    get_language_model,
)
from memories.search import SearchHit
from memories.selectors import memory_recall
from memories.writes import Actor, context_add, memory_digest, user_write_lock

logger = logging.getLogger(__name__)


@dataclass
class MessageOutcome:
    message: Message
    reply: str
    recalled: list[SearchHit]
    changes: list[MemoryChange] = field(default_factory=list)
    episodes: list[Memory] = field(default_factory=list)
    # Language-model calls made for this message (CallRecord), with their tokens.
    calls: list = field(default_factory=list)


def memory_view(hit: SearchHit) -> MemoryView:
    return MemoryView(
        key=str(hit.memory.vector_key),
        text=hit.memory.text,
        score=hit.similarity,
        happened_at=hit.memory.happened_at,
        time_granularity=hit.memory.time_granularity,
        slot=hit.memory.slot,
        kind=hit.memory.kind,
    )


def proposal_of(
    fact: ExtractedFact, *, message_index: int, vector, speaker: str, role: str
) -> Proposal:
    return Proposal(
        message_index=message_index,
        text=fact.text,
        vector=vector,
        digest=memory_digest(
            kind=Memory.Kind.FACT, role=role, speaker=speaker, text=fact.text
        ),
        speaker=speaker,
        slot=fact.slot,
        happened_at=fact.happened_at,
        time_granularity=fact.time_granularity,
    )


def link_to_previous(*, before: list[Message], first: Message) -> None:
    """Add a new message's first words to the context of the previous message's
    memories (the next message often answers or explains the previous one)."""
    if not before or settings.LTM_CONTEXT_MESSAGES_AFTER < 1:
        return
    previous = before[-1]
    words = context_for([previous, first], 0, [])
    context_add(
        list(
            Memory.objects.filter(source_message=previous, status=Memory.Status.ACTIVE)
        ),
        words,
    )


def _related(hits: list[SearchHit]) -> list[SearchHit]:
    # A keyword match counts as related; otherwise the meaning must be close.
    return [
        hit
        for hit in hits
        if hit.keyword_rank is not None
        or hit.similarity >= settings.LTM_RECALL_MIN_SCORE
    ]


def record_usage(tenant: Tenant, calls: list) -> None:
    count_model_calls(calls)
    usage_record(
        tenant=tenant,
        calls=len(calls),
        input_tokens=sum(call.input_tokens for call in calls),
        output_tokens=sum(call.output_tokens for call in calls),
    )


@dataclass
class Recall:
    """What recalling for a message found, and what remembering it reuses: the
    message's passages, the facts the rules found, and one embedding call's
    vectors (the message, its passages, those facts)."""

    tenant: Tenant
    user_id: str
    text: str
    sent_at: datetime
    llm: LanguageModel
    passages: list[str]
    facts: list[ExtractedFact]
    vectors: np.ndarray
    hits: list[SearchHit]
    recalled: list[SearchHit]


@dataclass
class Remembered:
    """What storing a message wrote: the message, the changes to the user's
    facts, and its episodes."""

    message: Message
    changes: list[MemoryChange]
    episodes: list[Memory]


def message_recall(
    *, tenant: Tenant, user_id: str, text: str, sent_at: datetime | None = None
) -> Recall:
    """The user's memories related to a message, before it is stored."""
    vector_operations_retry(tenant=tenant)
    sent_at = sent_at or timezone.now()
    llm = get_language_model()
    passages = message_passages(text)
    facts: list[ExtractedFact] = []
    related_count = settings.LTM_RECALL_TOP_K
    if llm.consolidates:
        related_count = max(settings.LTM_LLM_RELATED_MEMORIES, related_count)
    else:
        facts = llm.extract_facts(message=text, sent_at=sent_at)
    # One embedding call for the message (to recall with), its passages and facts.
    vectors = embed_all([text, *passages, *(fact.text for fact in facts)])
    hits = memory_recall(
        tenant=tenant,
        user_id=user_id,
        query=text,
        vector=vectors[0],
        top_k=related_count,
    )
    return Recall(
        tenant=tenant,
        user_id=user_id,
        text=text,
        sent_at=sent_at,
        llm=llm,
        passages=passages,
        facts=facts,
        vectors=vectors,
        hits=hits,
        recalled=_related(hits[: settings.LTM_RECALL_TOP_K]),
    )


class MessageGone(Exception):
    """The message a worker was remembering was erased, or its claim taken over."""


def message_remember(
    recall: Recall,
    *,
    calls: list,
    actor: str = Actor.API,
    message: Message | None = None,
) -> Remembered:
    """Store a recalled message: the episode (its passages) beside the facts the
    rules or the language model take from it. The model's calls go to `calls`.
    `message`: the message row a worker claimed, already stored (async memory)."""
    tenant, user_id = recall.tenant, recall.user_id
    text, sent_at = recall.text, recall.sent_at
    llm, passages, facts = recall.llm, recall.passages, recall.facts
    plan = None
    if llm.consolidates:
        from memories.providers.llm_chat import RecentMessage

        recent = [
            RecentMessage(role=item.role, text=item.text, sent_at=item.sent_at)
            for item in Message.objects.for_user(tenant, user_id)
            .filter(kind=Message.Kind.MESSAGE)
            .exclude(text="")
            .order_by("-sent_at", "-id")[: settings.LTM_LLM_RECENT_MESSAGES]
        ][::-1]
        # Only facts can be updated or deleted by the model's plan.
        related_facts = [
            hit for hit in recall.hits if hit.memory.kind == Memory.Kind.FACT
        ]
        plan = llm.plan_memory(
            message=text,
            sent_at=sent_at,
            recent=recent,
            related=[memory_view(hit) for hit in related_facts],
            calls=calls,
        )
        if plan is None:
            # The model could not say: the rules remember instead.
            facts = llm.extract_facts(message=text, sent_at=sent_at)
            fact_vectors = embed_all([fact.text for fact in facts])
        else:
            planned_texts = [op.fact.text for op in plan.operations if op.fact]
            fact_vectors = embed_all(planned_texts)
    else:
        fact_vectors = recall.vectors[1 + len(passages) :]
    with transaction.atomic(), vector_sync_batch():
        user_write_lock(tenant_id=tenant.pk, user_id=user_id)
        if message is None:
            message = Message.objects.create(
                tenant=tenant, user_id=user_id, text=text, sent_at=sent_at
            )
        elif not Message.objects.filter(
            pk=message.pk,
            memory_update=Message.MemoryUpdate.WORKING,
            memory_claimed_until=message.memory_claimed_until,
        ).update(memory_update=Message.MemoryUpdate.DONE, memory_claimed_until=None):
            # Erased meanwhile, or its claim expired and was taken: nothing here.
            raise MessageGone(message.pk)
        before = messages_before(
            tenant=tenant, user_id=user_id, first=message, exclude=[message.pk]
        )
        link_to_previous(before=before, first=message)
        contexts = [context_for([message], 0, before)]
        if plan is None:
            proposals = [
                proposal_of(
                    fact, message_index=0, vector=vector, speaker="", role="user"
                )
                for fact, vector in zip(facts, fact_vectors, strict=True)
            ]
            operations = rules_operations(
                tenant=tenant, user_id=user_id, proposals=proposals
            )
        else:
            operations = _plan_operations(
                tenant=tenant,
                user_id=user_id,
                plan=plan,
                vectors=fact_vectors,
                related=related_facts,
                said=text,
            )
        applied = apply(
            tenant=tenant,
            user_id=user_id,
            messages=[message],
            contexts=contexts,
            operations=operations,
            episodes=[
                EpisodeDraft(0, index, passage, vector)
                for index, (passage, vector) in enumerate(
                    zip(passages, recall.vectors[1 : 1 + len(passages)], strict=True)
                )
            ],
            actor=actor if plan is None else f"{actor}:{llm.name}",
        )
    return Remembered(
        message=message, changes=applied.changes, episodes=applied.episodes
    )


def message_handle(
    *,
    tenant: Tenant,
    user_id: str,
    text: str,
    sent_at: datetime | None = None,
    actor: str = Actor.API,
) -> MessageOutcome:
    """Handle one message of an end user: recall, remember, reply.

    The message is kept as an episode (its passages when long) beside the facts
    the rules or the language model take from it.
    """
    calls: list = []
    recall = message_recall(tenant=tenant, user_id=user_id, text=text, sent_at=sent_at)
    if memory_is_async():
        return _answer_then_remember(recall, calls=calls)
    remembered = message_remember(recall, calls=calls, actor=actor)
    reply = recall.llm.reply(
        message=text,
        recalled=[memory_view(hit) for hit in recall.recalled],
        remembered=[
            change.memory.text for change in remembered.changes if change.memory.text
        ],
        calls=calls,
    )
    record_usage(tenant, calls)
    return MessageOutcome(
        message=remembered.message,
        reply=reply,
        recalled=recall.recalled,
        changes=remembered.changes,
        episodes=remembered.episodes,
        calls=calls,
    )


def _answer_then_remember(recall: Recall, *, calls: list) -> MessageOutcome:
    """Async memory: store the message as pending, hand it to a worker, reply
    with what was recalled. A broker that does not take it leaves it to be
    remembered here, at once."""
    from memories.tasks import remember_message

    message = Message.objects.create(
        tenant=recall.tenant,
        user_id=recall.user_id,
        text=recall.text,
        sent_at=recall.sent_at,
        memory_update=Message.MemoryUpdate.PENDING,
    )
    changes, episodes = [], []
    try:
        remember_message.delay(message.pk)
    except OperationalError as exc:
        logger.warning(
            "The broker did not take message %s (%s); remembering it here.",
            message.pk,
            exc,
        )
        remember_pending(message.pk)
        message.refresh_from_db()
    reply = recall.llm.reply(
        message=recall.text,
        recalled=[memory_view(hit) for hit in recall.recalled],
        remembered=[],
        calls=calls,
    )
    record_usage(recall.tenant, calls)
    return MessageOutcome(
        message=message,
        reply=reply,
        recalled=recall.recalled,
        changes=changes,
        episodes=episodes,
        calls=calls,
    )


def remember_claimed(message: Message) -> Remembered | None:
    """A worker's part of async memory: recall for the claimed message as the
    user's memories are now (its earlier messages remembered), then remember it."""
    calls: list = []
    recall = message_recall(
        tenant=message.tenant,
        user_id=message.user_id,
        text=message.text,
        sent_at=message.sent_at,
    )
    try:
        remembered = message_remember(recall, calls=calls, message=message)
    except MessageGone:
        logger.info(
            "Message %s was erased or taken over before it was remembered.", message.pk
        )
        remembered = None
    record_usage(message.tenant, calls)
    return remembered


def _plan_operations(*, tenant, user_id, plan, vectors, related, said):
    proposals_by_position = []
    vector_index = 0
    for operation in plan.operations:
        proposal = None
        if operation.fact is not None:
            proposal = proposal_of(
                operation.fact,
                message_index=0,
                vector=vectors[vector_index],
                speaker="",
                role="user",
            )
            vector_index += 1
        proposals_by_position.append(
            PlannedChange(action=operation.action, key=operation.key, proposal=proposal)
        )
    targets = {str(hit.memory.vector_key): known_of(hit.memory) for hit in related}
    proposals = [change.proposal for change in proposals_by_position if change.proposal]
    # A plan names what it updates; near-duplicates are not looked for.
    stored = stored_for(
        tenant=tenant, user_id=user_id, proposals=proposals, threshold=None
    )
    return decide_plan(proposals_by_position, targets, stored, said=said)
