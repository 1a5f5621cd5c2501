"""Conversation import: past messages remembered without replies."""

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import transaction

from accounts.models import Tenant
from memories.models import Memory, Message
from memories.outbox import vector_operations_retry, vector_sync_batch
from memories.pipeline.apply import EpisodeDraft, MemoryChange, apply
from memories.pipeline.context import context_for, messages_before, rules_operations
from memories.pipeline.embedding import embed_messages, message_passages
from memories.pipeline.message import link_to_previous, proposal_of
from memories.providers.llm import get_language_model
from memories.vectorstores import get_vector_store
from memories.writes import Actor, user_write_lock


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
    # Every client message id of the batch -> its stored message id, whichever
    # request stored it.
    message_ids: dict[str, int] = field(default_factory=dict)
    changes: list[MemoryChange] = field(default_factory=list)
    episodes: list[Memory] = field(default_factory=list)
    # Messages of the batch left unstored because the time budget ran out, and
    # the position in the batch of the first of them.
    remaining: int = 0
    resume_from: int | None = None


def _known_ids(tenant: Tenant, user_id: str, ids: list[str]) -> dict[str, int]:
    return dict(
        Message.objects.for_user(tenant, user_id)
        .filter(client_message_id__in=ids)
        .values_list("client_message_id", "pk")
    )


class Deadline:
    """The time a request may spend, and the pace measured so far, so that work
    stops before a part that would not fit rather than in the middle of it."""

    def __init__(self, seconds: float | None):
        self.started = time.monotonic()
        self.end = self.started + seconds if seconds else math.inf
        self.units_done = 0

    def fits(self, units: int) -> bool:
        """Whether `units` more passages are likely to be done in time, at the
        pace of those done so far (the first part is always started)."""
        if not self.units_done:
            return True
        now = time.monotonic()
        pace = (now - self.started) / self.units_done
        return now + pace * units <= self.end

    def passed(self) -> bool:
        return time.monotonic() >= self.end

    def done(self, units: int) -> None:
        self.units_done += units


def _parts(passages: list[list[str]]):
    """Consecutive runs of messages, each at most LTM_IMPORT_PART_PASSAGES
    passages (a longer message is a part of its own): what one transaction
    stores."""
    limit = settings.LTM_IMPORT_PART_PASSAGES
    start, size = 0, 0
    for index, message_passages_ in enumerate(passages):
        if index > start and size + len(message_passages_) > limit:
            yield start, index, size
            start, size = index, 0
        size += len(message_passages_)
    if start < len(passages):
        yield start, len(passages), size


def messages_import(
    *,
    tenant: Tenant,
    user_id: str,
    incoming: list[IncomingMessage],
    actor: str = Actor.IMPORT,
    time_budget: float | None = None,
) -> ImportOutcome:
    """Remember a batch of past messages, without replies.

    Idempotent on client message ids: messages already imported are skipped,
    also when the same batch arrives twice at once (the database's unique
    constraint decides which request stores each message).

    The batch is stored in parts, whole messages in order, each part in its own
    transaction. When `time_budget` seconds would be exceeded by the next part,
    the import stops there: the outcome says how many messages remain, and
    sending the batch again goes on from where it stopped.
    """
    deadline = Deadline(time_budget)
    vector_operations_retry(tenant=tenant)
    ids = [item.client_message_id for item in incoming if item.client_message_id]
    known = _known_ids(tenant, user_id, ids)
    fresh = [
        (position, item)
        for position, item in enumerate(incoming)
        if item.client_message_id not in known
    ]
    passages = [message_passages(item.text) for _, item in fresh]
    outcome = ImportOutcome(messages=[], skipped_client_message_ids=[])
    # Neighbours give context across parts as they would within one.
    neighbours = [
        Message(text=item.text, speaker=item.speaker, role=item.role)
        for _, item in fresh
    ]
    taken = 0
    # A local store takes each part's vectors after its commit, so that later
    # parts find the earlier parts' facts among the nearest. A remote store is
    # not asked for those (context.py), and takes the vectors of all parts
    # together, in as few batched writes as one transaction would need.
    remote = not get_vector_store().capabilities.local_queries
    with vector_sync_batch() if remote else nullcontext():
        for start, end, units in _parts(passages):
            if not deadline.fits(units):
                break
            taken = start + _import_part(
                tenant=tenant,
                user_id=user_id,
                items=[item for _, item in fresh[start:end]],
                passages=passages[start:end],
                lookahead=neighbours[end : end + settings.LTM_CONTEXT_MESSAGES_AFTER],
                actor=actor,
                deadline=deadline,
                outcome=outcome,
                first_part=start == 0,
            )
            deadline.done(sum(len(p) for p in passages[start:taken]))
            if taken < end or deadline.passed():
                break
    if taken < len(fresh):
        outcome.remaining = len(fresh) - taken
        outcome.resume_from = fresh[taken][0]
    stored_now = {message.client_message_id for message in outcome.messages}
    handled = set(known) | {item.client_message_id for _, item in fresh[:taken]}
    outcome.skipped_client_message_ids = [
        client_id
        for client_id in ids
        if client_id in handled and client_id not in stored_now
    ]
    outcome.message_ids = _known_ids(tenant, user_id, ids) if ids else {}
    return outcome


def _import_part(
    *,
    tenant: Tenant,
    user_id: str,
    items: list[IncomingMessage],
    passages: list[list[str]],
    lookahead: list[Message],
    actor: str,
    deadline: Deadline,
    outcome: ImportOutcome,
    first_part: bool,
) -> int:
    """Store one part of an import in one transaction; returns how many of its
    messages were taken (fewer when a language model's extraction ran out of
    time: the rest are left for the next request)."""
    llm = get_language_model()
    # What an assistant said is kept as episodes; facts come from the others.
    facts = []
    for item in items:
        if facts and deadline.passed():
            break
        facts.append(
            []
            if item.role == "assistant"
            else llm.extract_facts(
                message=item.text, sent_at=item.sent_at, speaker=item.speaker
            )
        )
    if len(facts) < len(items):
        lookahead = []
        items, passages = items[: len(facts)], passages[: len(facts)]
    passage_vectors, fact_vectors = embed_messages(
        [
            (item.speaker, message_passages_, [fact.text for fact in message_facts])
            for item, message_passages_, message_facts in zip(
                items, passages, facts, strict=True
            )
        ]
    )
    with transaction.atomic(), vector_sync_batch():
        user_write_lock(tenant_id=tenant.pk, user_id=user_id)
        drafts = [
            Message(
                tenant=tenant,
                user_id=user_id,
                text=item.text,
                role=item.role,
                speaker=item.speaker,
                client_message_id=item.client_message_id,
                sent_at=item.sent_at,
            )
            for item in items
        ]
        with_ids = [draft for draft in drafts if draft.client_message_id]
        # A concurrent request may have stored some of these since they were
        # looked up: those are left to it.
        Message.objects.bulk_create(with_ids, ignore_conflicts=True)
        Message.objects.bulk_create([d for d in drafts if not d.client_message_id])
        stored = {
            client_id: (pk, created_at)
            for client_id, pk, created_at in Message.objects.for_user(tenant, user_id)
            .filter(client_message_id__in=[d.client_message_id for d in with_ids])
            .values_list("client_message_id", "pk", "created_at")
        }
        kept = []
        for index, draft in enumerate(drafts):
            if draft.client_message_id:
                stored_pk, created_at = stored.get(
                    draft.client_message_id, (None, None)
                )
                # Ours only if this request's row is the one stored.
                if stored_pk is None or created_at != draft.created_at:
                    continue
                draft.pk = stored_pk
                draft._state.adding = False
            kept.append(index)
        messages = [drafts[index] for index in kept]
        if messages:
            before = messages_before(
                tenant=tenant,
                user_id=user_id,
                first=messages[0],
                exclude=[message.pk for message in messages],
            )
            if first_part:
                link_to_previous(before=before, first=messages[0])
            around = messages + lookahead
            contexts = [context_for(around, i, before) for i in range(len(messages))]
            position = {original: new for new, original in enumerate(kept)}
            proposals, episode_drafts = [], []
            for original, item in enumerate(items):
                if original not in position:
                    continue
                for fact, vector in zip(
                    facts[original], fact_vectors[original], strict=True
                ):
                    proposals.append(
                        proposal_of(
                            fact,
                            message_index=position[original],
                            vector=vector,
                            speaker=item.speaker,
                            role=item.role,
                        )
                    )
                for number, (passage, vector) in enumerate(
                    zip(passages[original], passage_vectors[original], strict=True)
                ):
                    episode_drafts.append(
                        EpisodeDraft(position[original], number, passage, vector)
                    )
            operations = rules_operations(
                tenant=tenant, user_id=user_id, proposals=proposals
            )
            applied = apply(
                tenant=tenant,
                user_id=user_id,
                messages=messages,
                contexts=contexts,
                operations=operations,
                episodes=episode_drafts,
                actor=actor,
            )
            outcome.messages.extend(messages)
            outcome.changes.extend(applied.changes)
            outcome.episodes.extend(applied.episodes)
    return len(items)
