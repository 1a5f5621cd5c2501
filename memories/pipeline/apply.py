"""Apply: the single writer of a batch's decisions (facts) and episodes."""

from dataclasses import dataclass

import numpy as np

from accounts.models import Tenant
from memories.models import Memory, Message
from memories.pipeline.decide import Known, Op, Operation
from memories.text import keyword_text
from memories.writes import (
    memories_create,
    memories_forget,
    memory_build,
    memory_update,
    sources_add,
)


@dataclass(frozen=True)
class MemoryChange:
    """One change the pipeline made to a memory."""

    operation: Op
    memory: Memory
    previous_text: str = ""


@dataclass(frozen=True)
class EpisodeDraft:
    """One passage of one message of the batch, embedded."""

    message_index: int
    passage: int
    text: str
    vector: np.ndarray


@dataclass
class Applied:
    changes: list[MemoryChange]
    episodes: list[Memory]


def apply(
    *,
    tenant: Tenant,
    user_id: str,
    messages: list[Message],
    contexts: list[str],
    operations: list[Operation],
    episodes: list[EpisodeDraft],
    actor: str,
) -> Applied:
    """Write operations and episodes; runs inside the caller's transaction."""
    targets = {
        str(memory.vector_key): memory
        for memory in Memory.objects.select_for_update()
        .filter(tenant=tenant, user_id=user_id, status=Memory.Status.ACTIVE)
        .with_vector_keys(
            {op.target.key for op in operations if isinstance(op.target, Known)}
        )
    }
    changes: list[MemoryChange] = []
    # The memory each operation of the list wrote or named, by its index.
    memory_of: dict[int, Memory] = {}
    # (index of the operation, or None for an episode, the unsaved memory)
    pending: list[tuple[int | None, Memory]] = []
    stored_episodes: list[Memory] = []
    repeats: list[tuple[Memory, Message]] = []
    deletes: list[tuple[Memory, str]] = []

    def flush() -> None:
        created = memories_create(memories=[m for _, m in pending], actor=actor)
        copies = {id(memory): original for memory, original in created.copies}
        for index, memory in pending:
            if index is None:
                if memory.pk is not None and id(memory) not in copies:
                    stored_episodes.append(memory)
            elif id(memory) in copies:
                # Stored meanwhile by a concurrent request: a repeat of that one.
                memory_of[index] = copies[id(memory)]
            elif memory.pk is not None:
                memory_of[index] = memory
                changes.append(MemoryChange(Op.ADD, memory))
        pending.clear()

    def resolve(target: Known | int | None) -> Memory | None:
        if isinstance(target, Known):
            return targets.get(target.key)
        if isinstance(target, int):
            if any(index == target for index, _ in pending):
                flush()
            return memory_of.get(target)
        return None

    for index, operation in enumerate(operations):
        proposal = operation.proposal
        message = messages[proposal.message_index] if proposal else None
        if operation.op == Op.ADD:
            memory = memory_build(
                tenant=tenant,
                user_id=user_id,
                kind=Memory.Kind.FACT,
                text=proposal.text,
                vector=proposal.vector,
                message=message,
                actor=actor,
                slot=proposal.slot,
                happened_at=proposal.happened_at,
                time_granularity=proposal.time_granularity,
                context_text=contexts[proposal.message_index],
            )
            pending.append((index, memory))
            continue
        memory = resolve(operation.target)
        if memory is None:
            continue
        memory_of[index] = memory
        if operation.op == Op.REPEAT:
            repeats.append((memory, message))
        elif operation.op == Op.UPDATE:
            previous = memory_update(
                memory=memory,
                text=proposal.text,
                vector=proposal.vector,
                message=message,
                actor=actor,
                reason=operation.reason,
                slot=proposal.slot or memory.slot,
                happened_at=proposal.happened_at,
                time_granularity=proposal.time_granularity,
                context_text=contexts[proposal.message_index],
            )
            changes.append(MemoryChange(Op.UPDATE, memory, previous))
        elif operation.op == Op.DELETE:
            deletes.append((memory, operation.reason))
    # Episodes go in the same bulk writes as the facts added last.
    pending.extend(
        (None, draft)
        for draft in episode_drafts(
            tenant=tenant,
            user_id=user_id,
            messages=messages,
            contexts=contexts,
            episodes=episodes,
            actor=actor,
        )
    )
    flush()
    sources_add(repeats)
    for memory, reason in deletes:
        previous = memory.text
        memories_forget(
            tenant=tenant,
            user_id=user_id,
            memory_ids=[memory.pk],
            actor=actor,
            reason=reason,
        )
        memory.refresh_from_db()
        changes.append(MemoryChange(Op.DELETE, memory, previous))
    return Applied(changes=changes, episodes=stored_episodes)


def episode_drafts(
    *,
    tenant: Tenant,
    user_id: str,
    messages: list[Message],
    contexts: list[str],
    episodes: list[EpisodeDraft],
    actor: str,
) -> list[Memory]:
    """What was said, as episodes to store; words already kept (the same message
    sent again) gain the message as a source instead of being stored twice.

    A passage's context holds the rest of its message too: a message is found
    by all of its words, through the passage that matches best.
    """
    passages_of: dict[int, list[EpisodeDraft]] = {}
    for episode in episodes:
        passages_of.setdefault(episode.message_index, []).append(episode)

    def context(episode: EpisodeDraft) -> str:
        others = [
            keyword_text(other.text)
            for other in passages_of[episode.message_index]
            if other is not episode
        ]
        return " ".join([contexts[episode.message_index], *others]).strip()

    return [
        memory_build(
            tenant=tenant,
            user_id=user_id,
            kind=Memory.Kind.EPISODE,
            text=episode.text,
            vector=episode.vector,
            message=messages[episode.message_index],
            actor=actor,
            context_text=context(episode),
            passage=episode.passage,
        )
        for episode in episodes
    ]
