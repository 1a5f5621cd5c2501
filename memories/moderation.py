"""What support staff do to a memory from the admin: hide, restore, edit, delete.

Each action records the staff member and a required reason in the memory's
history and reaches the vector store through the outbox, like every other write.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.db import transaction

from memories.models import Memory, MemoryEvent
from memories.outbox import vector_sync_batch
from memories.pipeline.embedding import embedded_text
from memories.providers.embeddings import get_embedder
from memories.writes import (
    STAFF_ACTOR_PREFIX,
    memory_delete,
    memory_status_set,
    memory_update,
)

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
        return memory_status_set(
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
        copy = (
            Memory.objects.for_user(locked.tenant, locked.user_id)
            .filter(
                status=Memory.Status.ACTIVE,
                kind=locked.kind,
                content_hash=locked.content_hash,
            )
            .exclude(content_hash="")
            .first()
        )
        if copy is not None:
            raise ModerationError(
                f"Memory {locked.pk} is stored again as memory {copy.pk}: "
                "delete this one instead."
            )
        return memory_status_set(
            locked,
            status=Memory.Status.ACTIVE,
            action=MemoryEvent.Action.RESTORE,
            actor=actor,
            reason=reason,
        )


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
    (vector,) = get_embedder().embed([embedded_text(memory.speaker, text)])
    with transaction.atomic(), vector_sync_batch():
        locked = _locked_for(memory, allowed=EDIT_APPLIES_TO, refusal=refusal)
        memory_update(
            memory=locked,
            text=text,
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
