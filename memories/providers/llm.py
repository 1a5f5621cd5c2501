"""Language-model providers: what extracts facts, replies, and picks what to forget.

The offline provider needs no model: rules find the facts, templates reply.
"""

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from memories.extraction.rules import (
    FORGET_PREFIX,
    FORGET_TOPIC,
    SLOT_TOPICS,
    is_fact_worth_keeping,
    is_statement_worth_keeping,
    slot_of,
    split_clauses,
    to_second_person,
)
from memories.extraction.timeexpr import describe_time, resolve_time
from memories.providers.chat import ChatDelta, ChatMessage, ChatResult, Sampling, Usage
from memories.text import content_words


@dataclass(frozen=True)
class ExtractedFact:
    """A fact worth remembering, found in a message."""

    text: str
    slot: str = ""
    happened_at: datetime | None = None
    time_granularity: str = ""


@dataclass(frozen=True)
class MemoryView:
    """What a language model is shown of a stored memory."""

    key: str
    text: str
    score: float
    happened_at: datetime | None = None
    time_granularity: str = ""
    slot: str = ""
    kind: str = "fact"


class LanguageModel(Protocol):
    name: str
    # True when a model plans each message's memory operations in one call.
    consolidates: bool
    # The model that answers a client's conversation unless told another.
    answer_model: str

    def extract_facts(
        self, *, message: str, sent_at: datetime, speaker: str = ""
    ) -> list[ExtractedFact]:
        """The facts in a message worth keeping (none for questions, small talk).

        `speaker` names who said it when a conversation between people is imported.
        """

    def reply(
        self,
        *,
        message: str,
        recalled: list[MemoryView],
        remembered: list[str],
        calls: list | None = None,
    ) -> str:
        """The answer to a message, given the memories recalled for it.

        A model appends the calls it made (and their tokens) to `calls`.
        """

    def answer(
        self,
        *,
        conversation: list[ChatMessage],
        recalled: list[MemoryView],
        remembered: list[str],
        max_tokens: int,
        sampling: Sampling,
        model: str | None = None,
        calls: list | None = None,
    ) -> ChatResult:
        """The answer to a client's conversation, with the memories recalled for
        its last (user) turn shown as data. Raises ChatModelError when the model
        cannot answer: the client's own conversation has no fallback."""

    def answer_stream(
        self,
        *,
        conversation: list[ChatMessage],
        recalled: list[MemoryView],
        remembered: list[str],
        max_tokens: int,
        sampling: Sampling,
        model: str | None = None,
        calls: list | None = None,
    ) -> Iterator[ChatDelta]:
        """`answer`, as it is written (see ChatModel.stream)."""

    def forget_query(self, *, request: str) -> str:
        """The text to search memories with for a forget request."""

    def choose_forgotten(
        self, *, request: str, candidates: list[MemoryView], calls: list | None = None
    ) -> list[str]:
        """Keys, taken only from `candidates`, of the memories a request names."""

    def forget_reply(self, *, request: str, forgotten: list[MemoryView]) -> str:
        """The answer to a forget request."""


NO_MODEL_NOTE = (
    "(No language model is configured, so this reply is a template built from "
    "stored memories.)"
)


class OfflineLanguageModel:
    """Rules and templates: works with no model and says so in its replies."""

    name = "offline-rules"
    # Facts come from rules per message, not from a consolidation call.
    consolidates = False
    answer_model = name

    def extract_facts(
        self, *, message: str, sent_at: datetime, speaker: str = ""
    ) -> list[ExtractedFact]:
        # Between named people, what either says of anyone may matter later; to an
        # assistant, only what users say of themselves is kept.
        keep = is_statement_worth_keeping if speaker else is_fact_worth_keeping
        facts = []
        for clause in split_clauses(message):
            if not keep(clause):
                continue
            text = clause[:1].upper() + clause[1:]
            if text[-1] not in ".!":
                text += "."
            resolved = resolve_time(clause, now=sent_at)
            facts.append(
                ExtractedFact(
                    text=text,
                    slot=slot_of(clause),
                    happened_at=resolved.when if resolved else None,
                    time_granularity=resolved.granularity if resolved else "",
                )
            )
        return facts

    def reply(
        self,
        *,
        message: str,
        recalled: list[MemoryView],
        remembered: list[str],
        calls: list | None = None,
    ) -> str:
        parts = []
        facts = [memory for memory in recalled if memory.kind != "episode"]
        # What was said is dated: an old message may say what a newer fact
        # has since replaced, and the facts come first.
        said = [memory for memory in recalled if memory.kind == "episode"]
        if facts:
            parts.append("Here is what I remember that relates to your message:")
            parts.extend(f"- {_describe(memory)}" for memory in facts)
        if said:
            parts.append("What you said before that relates to it:")
            parts.extend(f"- {_quote(memory)}" for memory in said)
        if remembered:
            parts.append("I will remember:")
            parts.extend(f"- {to_second_person(text)}" for text in remembered)
        if not parts:
            parts.append("I don't have anything stored that relates to this yet.")
        parts.append(NO_MODEL_NOTE)
        return "\n".join(parts)

    def answer(
        self,
        *,
        conversation: list[ChatMessage],
        recalled: list[MemoryView],
        remembered: list[str],
        max_tokens: int,
        sampling: Sampling,
        model: str | None = None,
        calls: list | None = None,
    ) -> ChatResult:
        # The template, as /message replies: no model, so no tokens.
        last = conversation[-1] if conversation else None
        reply = self.reply(
            message=last.content if last and last.role == "user" else "",
            recalled=recalled,
            remembered=remembered,
        )
        return ChatResult(content=reply, usage=Usage(self.answer_model, 0, 0))

    def answer_stream(
        self,
        *,
        conversation: list[ChatMessage],
        recalled: list[MemoryView],
        remembered: list[str],
        max_tokens: int,
        sampling: Sampling,
        model: str | None = None,
        calls: list | None = None,
    ) -> Iterator[ChatDelta]:
        result = self.answer(
            conversation=conversation,
            recalled=recalled,
            remembered=remembered,
            max_tokens=max_tokens,
            sampling=sampling,
        )
        for line in result.content.splitlines(keepends=True):
            yield ChatDelta(text=line)
        yield ChatDelta(finish_reason=result.finish_reason, usage=result.usage)

    def forget_query(self, *, request: str) -> str:
        query = FORGET_PREFIX.sub("", request).strip(" .!")
        return query or request

    def choose_forgotten(
        self, *, request: str, candidates: list[MemoryView], calls: list | None = None
    ) -> list[str]:
        if FORGET_TOPIC.search(request):
            # "Forget everything about my job": every memory sharing the topic's
            # words or its slot, or close to it in meaning.
            topic = content_words(self.forget_query(request=request))
            return [
                memory.key
                for memory in candidates
                if memory.score >= settings.LTM_FORGET_TOPIC_MIN_SCORE
                or topic & content_words(memory.text)
                or topic & SLOT_TOPICS.get(memory.slot, set())
            ]
        return [
            memory.key
            for memory in candidates
            if memory.score >= settings.LTM_FORGET_MIN_SCORE
        ]

    def forget_reply(self, *, request: str, forgotten: list[MemoryView]) -> str:
        if not forgotten:
            return (
                "I could not find a stored memory matching that request, so nothing "
                "was forgotten.\n" + NO_MODEL_NOTE
            )
        count = len(forgotten)
        lines = [f"I have forgotten {count} memor{'y' if count == 1 else 'ies'}:"]
        lines.extend(f"- {to_second_person(memory.text)}" for memory in forgotten)
        lines.append(NO_MODEL_NOTE)
        return "\n".join(lines)


def _describe(memory: MemoryView) -> str:
    text = to_second_person(memory.text)
    if memory.happened_at is not None and memory.time_granularity:
        when = describe_time(memory.happened_at, memory.time_granularity)
        text = f"{text.rstrip('.')} ({when})."
    return text


def _quote(memory: MemoryView, max_chars: int = 200) -> str:
    text = (
        memory.text if len(memory.text) <= max_chars else memory.text[:max_chars] + "…"
    )
    if memory.happened_at is None:
        return f'"{text}"'
    return f'"{text}" ({memory.happened_at:%Y-%m-%d})'


_llm: LanguageModel | None = None
_llm_lock = threading.Lock()


def get_language_model() -> LanguageModel:
    """The process-wide language-model provider the settings name."""
    global _llm
    if _llm is None:
        with _llm_lock:
            if _llm is None:
                _llm = build_language_model()
    return _llm


def build_language_model() -> LanguageModel:
    """The language model the settings name; the offline rules by default."""
    provider = settings.LTM_LLM_PROVIDER
    if provider == "offline":
        return OfflineLanguageModel()
    from memories.providers.llm_chat import ChatLanguageModel

    if provider == "openai":
        from memories.providers.openai_chat import OpenAIChatModel

        chat = OpenAIChatModel(
            api_key=settings.OPENAI_API_KEY,
            base_url=settings.OPENAI_BASE_URL or None,
            model=settings.LTM_OPENAI_CHAT_MODEL,
            timeout=settings.LTM_LLM_TIMEOUT_SECONDS,
            max_retries=settings.LTM_LLM_MAX_RETRIES,
            structured_output=settings.LTM_OPENAI_STRUCTURED_OUTPUT,
        )
    elif provider == "bedrock":
        from memories.providers.bedrock import BedrockChatModel

        chat = BedrockChatModel(
            model_id=settings.LTM_BEDROCK_CHAT_MODEL,
            region=settings.LTM_BEDROCK_REGION,
            endpoint_url=settings.LTM_BEDROCK_ENDPOINT_URL or None,
            timeout=settings.LTM_LLM_TIMEOUT_SECONDS,
            max_attempts=settings.LTM_LLM_MAX_RETRIES + 1,
        )
    else:
        raise ImproperlyConfigured(
            f"Unknown LTM_LLM_PROVIDER {provider!r}: use 'offline', 'openai' or "
            "'bedrock'."
        )
    return ChatLanguageModel(chat, provider=provider)


def reset_language_model() -> None:
    global _llm
    _llm = None
