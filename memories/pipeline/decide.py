"""Decide: proposed facts and what is stored -> operations. Pure: no database.

The offline rules and a language model's plan both end here as one list of
operations (add, update, delete, repeat), which `apply` writes.
"""

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

import numpy as np

from memories.text import content_words, named_values, words

# Words of a message that asks to forget, or says a memory was never true: only
# then may a model's plan delete (a memory's own text cannot ask for it).
DELETE_INTENT = re.compile(
    r"\b(?:forget|delete|remove|erase|never\s+(?:was|were|did|had|have|said)|"
    r"(?:is|was|that's|that\s+is|that\s+was)\s+(?:not|n't)\s+true|"
    r"(?:that's|that\s+is|that\s+was|this\s+is)\s+(?:wrong|false|incorrect))\b",
    re.IGNORECASE,
)
# Share of a model-written fact's content words the message must hold.
SUPPORT_SHARE = 0.5


class Op(StrEnum):
    ADD = "add"
    UPDATE = "update"
    DELETE = "delete"
    # Already known: the message becomes one more source of it.
    REPEAT = "repeat"


@dataclass(frozen=True)
class Proposal:
    """A fact proposed for one message of the batch."""

    message_index: int
    text: str
    vector: np.ndarray
    digest: str
    speaker: str = ""
    slot: str = ""
    happened_at: datetime | None = None
    time_granularity: str = ""


@dataclass(frozen=True)
class Known:
    """A stored, active fact, as the decision sees it."""

    key: str
    text: str
    digest: str
    slot: str = ""
    speaker: str = ""


@dataclass(frozen=True)
class Operation:
    """One change. `target` is a stored fact, or the index of an earlier
    operation of the same list whose fact it changes."""

    op: Op
    proposal: Proposal | None = None
    target: Known | int | None = None
    reason: str = ""


@dataclass
class Stored:
    """What is stored that bears on a batch's proposals."""

    by_digest: dict[str, Known] = field(default_factory=dict)
    # Per proposal, the most similar stored fact and its cosine similarity.
    nearest: list[tuple[Known, float] | None] = field(default_factory=list)
    # (speaker, slot) -> the newest stored fact of that slot.
    by_slot: dict[tuple[str, str], Known] = field(default_factory=dict)


SUPERSEDED = "superseded by a newer statement"
NEWER_VALUE = "a newer statement names another value"


def _close(a: Proposal | Known, b: Proposal) -> Op:
    """A near-identical fact: a repeat, unless the two name different values."""
    if named_values(a.text) != named_values(b.text):
        return Op.UPDATE
    return Op.REPEAT


def decide_rules(
    proposals: list[Proposal], stored: Stored, *, threshold: float
) -> list[Operation]:
    """Add, update or repeat for each proposed fact, in order.

    Same words: a repeat. Near-identical meaning (cosine >= threshold): a repeat,
    or an update when the newer names another number, name or date. The same
    slot of the same speaker (home, job...): an update. Otherwise: an add.
    """
    operations: list[Operation] = []
    # Facts this batch adds or rewrites: (operation index, latest proposal).
    decided: list[tuple[int, Proposal]] = []
    batch_digest: dict[str, int] = {}
    batch_slot: dict[tuple[str, str], int] = {}
    for position, proposal in enumerate(proposals):
        if proposal.digest in batch_digest:
            operations.append(
                Operation(Op.REPEAT, proposal, batch_digest[proposal.digest])
            )
            continue
        known = stored.by_digest.get(proposal.digest)
        if known is not None:
            operations.append(Operation(Op.REPEAT, proposal, known))
            continue
        operation = _near_in_batch(proposal, decided, threshold)
        if operation is None:
            nearest = stored.nearest[position] if stored.nearest else None
            if nearest is not None and nearest[1] >= threshold:
                op = _close(nearest[0], proposal)
                operation = Operation(
                    op, proposal, nearest[0], NEWER_VALUE if op == Op.UPDATE else ""
                )
        if operation is None and proposal.slot:
            # A slot is one person's: Tomas's home never replaces Rosa's.
            slot_key = (proposal.speaker, proposal.slot)
            previous = batch_slot.get(slot_key, stored.by_slot.get(slot_key))
            if previous is not None:
                operation = Operation(Op.UPDATE, proposal, previous, SUPERSEDED)
        if operation is None:
            operation = Operation(Op.ADD, proposal)
        operations.append(operation)
        if operation.op == Op.REPEAT:
            continue
        index = len(operations) - 1
        root = _root(operations, index)
        decided = [(i, p) for i, p in decided if i != root] + [(root, proposal)]
        batch_digest[proposal.digest] = root
        if proposal.slot:
            batch_slot[(proposal.speaker, proposal.slot)] = root
    return operations


def _root(operations: list[Operation], index: int) -> int | Known:
    """The operation that first brought a fact into this batch (or the stored
    fact it changes), so later changes in the batch name the same memory."""
    target = operations[index].target
    if operations[index].op == Op.ADD:
        return index
    while isinstance(target, int) and operations[target].op != Op.ADD:
        target = operations[target].target
    return target


def _near_in_batch(
    proposal: Proposal, decided: list[tuple[int | Known, Proposal]], threshold: float
) -> Operation | None:
    if not decided:
        return None
    similarities = np.stack([p.vector for _, p in decided]) @ proposal.vector
    best = int(np.argmax(similarities))
    if similarities[best] < threshold:
        return None
    target, earlier = decided[best]
    op = _close(earlier, proposal)
    return Operation(op, proposal, target, NEWER_VALUE if op == Op.UPDATE else "")


@dataclass(frozen=True)
class PlannedChange:
    """One operation a language model planned (see providers.llm_chat)."""

    action: str  # "add", "update" or "delete"
    key: str = ""
    proposal: Proposal | None = None


def asks_to_delete(said: str) -> bool:
    return bool(DELETE_INTENT.search(said))


def supported_by(text: str, said: str) -> bool:
    """Whether a fact a model wrote comes from what the user said: at least
    half of its content words, and every number and name it names, are in the
    message. Neither a memory's text nor a hostile answer can then store or
    rewrite what the user did not say."""
    content = content_words(text) - {"user"}
    if not content:
        return False
    if len(content & content_words(said)) < SUPPORT_SHARE * len(content):
        return False
    said_words = {word.lower() for word in words(said)}
    return named_values(text) <= said_words


def decide_plan(
    planned: list[PlannedChange],
    targets: dict[str, Known],
    stored: Stored,
    *,
    said: str,
) -> list[Operation]:
    """A model's plan as operations, within what the message allows: only
    memories it was shown can be changed; an add or an update must be
    supported by the message; a delete applies only when the message asks for
    one; a fact already stored is a repeat."""
    deletes_allowed = asks_to_delete(said)
    operations: list[Operation] = []
    touched: set[str] = set()
    added: dict[str, int] = {}
    for change in planned:
        if change.action in ("update", "delete"):
            known = targets.get(change.key)
            if known is None or change.key in touched:
                continue
            if change.action == "delete":
                if deletes_allowed:
                    touched.add(change.key)
                    operations.append(
                        Operation(Op.DELETE, None, known, "the user said so")
                    )
                continue
            if not supported_by(change.proposal.text, said):
                continue
            touched.add(change.key)
            if known.digest == change.proposal.digest:
                operations.append(Operation(Op.REPEAT, change.proposal, known))
            else:
                operations.append(
                    Operation(Op.UPDATE, change.proposal, known, SUPERSEDED)
                )
            continue
        proposal = change.proposal
        if not supported_by(proposal.text, said):
            continue
        if proposal.digest in added:
            operations.append(Operation(Op.REPEAT, proposal, added[proposal.digest]))
        elif proposal.digest in stored.by_digest:
            operations.append(
                Operation(Op.REPEAT, proposal, stored.by_digest[proposal.digest])
            )
        else:
            added[proposal.digest] = len(operations)
            operations.append(Operation(Op.ADD, proposal))
    return operations
