"""Context: what is stored that bears on new messages, read from the database
(and, for near-duplicates, the vector store) before deciding."""

import numpy as np
from django.conf import settings

from accounts.models import Tenant
from memories.models import Memory, Message
from memories.pipeline.decide import Known, Operation, Proposal, Stored, decide_rules
from memories.search import keyword_ranking
from memories.search.document import spoken
from memories.vectors import cosine, from_bytes
from memories.vectorstores import Namespace, get_vector_store

# Stored memories compared with each new fact: the nearest few by vector (the
# vector store holds episodes too), or the best keyword matches on a remote store.
NEAREST_CANDIDATES = 8


def known_of(memory: Memory) -> Known:
    """A stored fact as the decision sees it."""
    return Known(
        key=str(memory.vector_key),
        text=memory.text,
        digest=memory.content_hash,
        slot=memory.slot,
        speaker=memory.speaker,
    )


# What a decision reads of a stored fact (not its embedding or context).
_KNOWN_FIELDS = ("vector_key", "text", "content_hash", "slot", "speaker", "updated_at")


def active_facts(tenant: Tenant, user_id: str):
    return Memory.objects.for_user(tenant, user_id).filter(
        status=Memory.Status.ACTIVE, kind=Memory.Kind.FACT
    )


def stored_for(
    *,
    tenant: Tenant,
    user_id: str,
    proposals: list[Proposal],
    threshold: float | None,
) -> Stored:
    """The stored facts a batch's proposals may repeat, update or replace;
    `threshold`: the least cosine at which a stored fact is a near-duplicate
    (None: near-duplicates are not looked for)."""
    stored = Stored()
    if not proposals:
        return stored
    facts = active_facts(tenant, user_id)
    stored.by_digest = {
        memory.content_hash: known_of(memory)
        for memory in facts.filter(
            content_hash__in={proposal.digest for proposal in proposals}
        ).only(*_KNOWN_FIELDS)
    }
    slots = {(p.speaker, p.slot) for p in proposals if p.slot}
    if slots:
        for memory in (
            facts.filter(slot__in={slot for _, slot in slots})
            .only(*_KNOWN_FIELDS)
            .order_by("updated_at", "pk")
        ):
            if (memory.speaker, memory.slot) in slots:
                stored.by_slot[(memory.speaker, memory.slot)] = known_of(memory)
    if threshold is not None:
        stored.nearest = _nearest_facts(
            tenant=tenant, user_id=user_id, proposals=proposals, threshold=threshold
        )
    return stored


def rules_operations(
    *, tenant: Tenant, user_id: str, proposals: list[Proposal]
) -> list[Operation]:
    """What the rules do with proposed facts, given the user's stored ones:
    a near-duplicate is one at least LTM_DUPLICATE_SIMILARITY similar."""
    threshold = settings.LTM_DUPLICATE_SIMILARITY
    stored = stored_for(
        tenant=tenant, user_id=user_id, proposals=proposals, threshold=threshold
    )
    return decide_rules(proposals, stored, threshold=threshold)


def _nearest_facts(
    *, tenant: Tenant, user_id: str, proposals: list[Proposal], threshold: float
) -> list[tuple[Known, float] | None]:
    """Each proposal's most similar stored fact, when it is at least
    `threshold` similar (None otherwise).

    A local store answers every proposal in at most one pass over the user's
    vectors, often in none: a fact said in a message is close to the message,
    and the store can tell when the rows its recall returned hold every row
    that close to the fact. A
    remote one (S3 Vectors) would take a query per fact; a near-duplicate shares
    most of its words, so there the candidates come from the database's keyword
    index and their embeddings, kept in the audit rows, are compared here.
    """
    store = get_vector_store()
    vectors = [proposal.vector for proposal in proposals]
    if store.capabilities.local_queries:
        answers = store.query_many(
            namespace=Namespace(tenant_id=tenant.pk, user_id=user_id),
            vectors=vectors,
            top_k=NEAREST_CANDIDATES,
            min_score=threshold,
        )
        keys = {hit.key for hits in answers for hit in hits}
        facts = {
            str(memory.vector_key): memory
            for memory in active_facts(tenant, user_id)
            .with_vector_keys(keys)
            .only(*_KNOWN_FIELDS)
        }
        nearest = []
        for hits in answers:
            best = next((hit for hit in hits if hit.key in facts), None)
            nearest.append((known_of(facts[best.key]), best.score) if best else None)
        return nearest
    candidates = [
        keyword_ranking(
            tenant=tenant,
            user_id=user_id,
            query=proposal.text,
            limit=NEAREST_CANDIDATES,
        )
        for proposal in proposals
    ]
    wanted = {pk for ids in candidates for pk in ids}
    facts = {
        memory.pk: memory
        for memory in active_facts(tenant, user_id).filter(pk__in=wanted)
    }
    nearest = []
    for ids, vector in zip(candidates, vectors, strict=True):
        scored = [
            (facts[pk], cosine(from_bytes(facts[pk].embedding), np.asarray(vector)))
            for pk in ids
            if pk in facts
        ]
        best = max(scored, key=lambda item: item[1], default=None)
        nearest.append((known_of(best[0]), best[1]) if best else None)
    return nearest


def messages_before(
    *, tenant: Tenant, user_id: str, first: Message, exclude: list[int]
) -> list[Message]:
    """The few messages said just before a batch, oldest first."""
    return list(
        Message.objects.for_user(tenant, user_id)
        .filter(kind=Message.Kind.MESSAGE, sent_at__lte=first.sent_at)
        .exclude(pk__in=exclude)
        .order_by("-sent_at", "-id")[: settings.LTM_CONTEXT_MESSAGES_BEFORE]
    )[::-1]


def context_for(messages: list[Message], index: int, before: list[Message]) -> str:
    """The words of the messages around one: a few before, one after."""
    earlier = (before + messages[:index])[-settings.LTM_CONTEXT_MESSAGES_BEFORE :]
    later = messages[index + 1 : index + 1 + settings.LTM_CONTEXT_MESSAGES_AFTER]
    return " ".join(
        words
        for neighbour in (*earlier, *later)
        if (words := spoken(speaker=neighbour.speaker, text=neighbour.text))
    )
