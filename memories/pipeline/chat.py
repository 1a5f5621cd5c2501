"""A chat completion with memory: a client's conversation answered by the
configured model, with the end user's memories recalled for the new turn.

The new turn is the conversation's last message when it is the user's. The
memories recalled for it (the same recall as /message) reach the model only as
data inside that turn, never in a system message; the client's own system
messages go as the client wrote them. Once the model's answer is complete, the
turn is remembered as /message remembers a message (its episode, its facts, with
provenance). Earlier turns were remembered when they were new; the model's
answer is not kept (it is not what the user said). A model that cannot answer,
or stops halfway, leaves nothing stored: the same request can be sent again.
"""

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain

from django.conf import settings

from accounts.models import Tenant
from ltm_project.deadline import deadline_kept
from memories.pipeline.message import (
    Recall,
    memory_view,
    message_recall,
    message_remember,
    record_usage,
)
from memories.providers.chat import (
    ChatDelta,
    ChatMessage,
    ChatModelUnavailable,
    Sampling,
    Usage,
)
from memories.providers.llm import LanguageModel, get_language_model


@dataclass(frozen=True)
class ChatRequest:
    """A client's chat completion request, as the pipeline takes it."""

    user_id: str
    messages: list[ChatMessage]
    # The model the client named; see chat_model_for.
    model: str
    max_tokens: int | None = None
    sampling: Sampling = field(default_factory=Sampling)


@dataclass(frozen=True)
class Completion:
    """The model's whole answer."""

    id: str
    created: int
    model: str
    content: str
    finish_reason: str
    usage: Usage


@dataclass(frozen=True)
class CompletionChunk:
    """One piece of a streamed answer: the first names the role, then pieces of
    text, then the finish reason, and last the usage of the whole answer."""

    id: str
    created: int
    model: str
    role: str | None = None
    text: str | None = None
    finish_reason: str | None = None
    usage: Usage | None = None


def chat_model_for(requested: str) -> str | None:
    """The model a request may have: the one it names when LTM_CHAT_MODELS lists
    it, else None, the configured model. No tenant spends the operator's key on
    a model the operator did not choose."""
    return requested if requested in settings.LTM_CHAT_MODELS else None


@dataclass
class _Turn:
    recall: Recall | None
    llm: LanguageModel
    model: str
    # What the language model's answer and answer_stream take.
    answer: dict


def _prepare(*, tenant: Tenant, request: ChatRequest) -> _Turn:
    last = request.messages[-1]
    recall = None
    if last.role == "user":
        recall = message_recall(
            tenant=tenant, user_id=request.user_id, text=last.content
        )
    llm = recall.llm if recall is not None else get_language_model()
    model = chat_model_for(request.model) or llm.answer_model
    cap = settings.LTM_CHAT_MAX_TOKENS
    return _Turn(
        recall=recall,
        llm=llm,
        model=model,
        answer={
            "conversation": request.messages,
            "recalled": [memory_view(hit) for hit in recall.recalled] if recall else [],
            "remembered": [fact.text for fact in recall.facts] if recall else [],
            "max_tokens": min(request.max_tokens or cap, cap),
            "sampling": request.sampling,
            "model": model,
        },
    )


def _remember(*, tenant: Tenant, turn: _Turn, calls: list) -> None:
    """The new turn stored (if there is one), and the calls' tokens counted."""
    try:
        if turn.recall is not None:
            message_remember(turn.recall, calls=calls)
    finally:
        record_usage(tenant, calls)


def _new_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def chat_complete(*, tenant: Tenant, request: ChatRequest) -> Completion:
    """The model's answer to the conversation; then the new turn remembered.
    Raises ChatModelError, with nothing stored, when the model cannot answer."""
    turn = _prepare(tenant=tenant, request=request)
    calls: list = []
    result = turn.llm.answer(**turn.answer, calls=calls)
    _remember(tenant=tenant, turn=turn, calls=calls)
    return Completion(
        id=_new_id(),
        created=int(time.time()),
        model=result.usage.model,
        content=result.content,
        finish_reason=result.finish_reason,
        usage=result.usage,
    )


def chat_stream(*, tenant: Tenant, request: ChatRequest) -> Iterator[CompletionChunk]:
    """The model's answer as it is written; the new turn is remembered after
    the last piece of text, before the finish chunk.

    The model is asked, and its first piece awaited, before this returns: a
    model that cannot answer raises ChatModelError here, while the response can
    still be an error, rather than breaking a stream already begun. The chunks
    keep the request's deadline while they are written.
    """
    turn = _prepare(tenant=tenant, request=request)
    calls: list = []
    deltas = turn.llm.answer_stream(**turn.answer, calls=calls)
    first = next(deltas, None)
    return deadline_kept(
        _chunks(
            tenant=tenant,
            turn=turn,
            deltas=chain([first] if first else [], deltas),
            calls=calls,
        )
    )


def _chunks(
    *, tenant: Tenant, turn: _Turn, deltas: Iterator[ChatDelta], calls: list
) -> Iterator[CompletionChunk]:
    fields = {"id": _new_id(), "created": int(time.time()), "model": turn.model}
    yield CompletionChunk(**fields, role="assistant", text="")
    last = None
    for delta in deltas:
        if delta.text:
            yield CompletionChunk(**fields, text=delta.text)
        last = delta
    if last is None or last.finish_reason is None:
        raise ChatModelUnavailable("The model's answer ended before it was complete.")
    _remember(tenant=tenant, turn=turn, calls=calls)
    yield CompletionChunk(**fields, finish_reason=last.finish_reason)
    yield CompletionChunk(**fields, usage=last.usage)
