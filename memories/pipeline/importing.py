"""Conversation import: past messages remembered without replies."""

from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import transaction

from accounts.models import Tenant
from memories.models import Memory, Message
from memories.outbox import vector_operations_retry, vector_sync_batch
from memories.pipeline.apply import EpisodeDraft, MemoryChange, apply
from memories.pipeline.context import context_for, messages_before, stored_for
from memories.pipeline.decide import decide_rules
from memories.pipeline.embedding import embed_messages, message_passages
from memories.pipeline.message import link_to_previous, proposal_of
from memories.providers.llm import get_language_model
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


def _known_ids(tenant: Tenant, user_id: str, ids: list[str]) -> dict[str, int]:
    return dict(
        Message.objects.for_user(tenant, user_id)
        .filter(client_message_id__in=ids)
        .values_list("client_message_id", "pk")
    )


def messages_import(
    *,
    tenant: Tenant,
    user_id: str,
    incoming: list[IncomingMessage],
    actor: str = Actor.IMPORT,
) -> ImportOutcome:
    """Remember a batch of past messages, without replies.

    Idempotent on client message ids: messages already imported are skipped,
    also when the same batch arrives twice at once (the database's unique
    constraint decides which request stores each message).
    """
    vector_operations_retry(tenant=tenant)
    ids = [item.client_message_id for item in incoming if item.client_message_id]
    known = _known_ids(tenant, user_id, ids)
    fresh = [item for item in incoming if item.client_message_id not in known]
    llm = get_language_model()
    # What an assistant said is kept as episodes; facts come from the others.
    facts = [
        []
        if item.role == "assistant"
        else llm.extract_facts(
            message=item.text, sent_at=item.sent_at, speaker=item.speaker
        )
        for item in fresh
    ]
    passages = [message_passages(item.text) for item in fresh]
    passage_vectors, fact_vectors = embed_messages(
        [
            (item.speaker, message_passages_, [fact.text for fact in message_facts])
            for item, message_passages_, message_facts in zip(
                fresh, passages, facts, strict=True
            )
        ]
    )
    changes: list[MemoryChange] = []
    episodes: list[Memory] = []
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
            for item in fresh
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
            link_to_previous(before=before, first=messages[0])
            contexts = [context_for(messages, i, before) for i in range(len(messages))]
            position = {original: new for new, original in enumerate(kept)}
            proposals, episode_drafts = [], []
            for original, item in enumerate(fresh):
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
            operations = decide_rules(
                proposals,
                stored_for(tenant=tenant, user_id=user_id, proposals=proposals),
                threshold=settings.LTM_DUPLICATE_SIMILARITY,
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
            changes, episodes = applied.changes, applied.episodes
    message_ids = _known_ids(tenant, user_id, ids) if ids else {}
    return ImportOutcome(
        messages=messages,
        skipped_client_message_ids=[
            item.client_message_id
            for item in incoming
            if item.client_message_id
            and item.client_message_id not in {m.client_message_id for m in messages}
        ],
        message_ids=message_ids,
        changes=changes,
        episodes=episodes,
    )
