"""Language-model providers: what extracts facts, replies, and picks what to forget.

The offline provider needs no model: rules find the facts, templates reply.
"""

import re
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from memories.providers.timeexpr import describe_time, resolve_time


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


class LanguageModel(Protocol):
    name: str
    # True when a model plans each message's memory operations in one call.
    consolidates: bool

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

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
# A new clause whose subject is the speaker: "..., and I am allergic to peanuts".
_CLAUSE_SPLIT = re.compile(
    r"\s*(?:,|;)?\s+(?:and|but|so|also|plus)\s+(?=(?:i|i'm|i've|i'd|i'll|my|we|"
    r"we're|we've|our)\b)|\s*;\s*",
    re.I,
)
_FIRST_PERSON = re.compile(
    r"\b(?:i|i'm|i've|i'd|i'll|im|we|we're|we've|my|our|mine)\b", re.I
)
_QUESTION_START = re.compile(
    r"^(?:what|where|when|who|whom|whose|why|how|which|do|does|did|can|could|"
    r"would|will|shall|should|is|are|am|was|were|have|has|may|might)\b",
    re.I,
)
_SMALL_TALK = re.compile(
    r"^(?:hi|hello|hey|thanks|thank you|ok|okay|cool|great|nice|sure|yes|no|yeah|"
    r"nope|bye|goodbye|good (?:morning|night|evening|afternoon)|lol|haha|hmm)\b"
    r"[\s!.,]*$",
    re.I,
)
_PHATIC = re.compile(
    r"^(?:i|we) (?:see|agree|know|guess|understand|mean|hope so|think so|don't know|"
    r"do not know|am not sure|wonder\b.*)\W*$"
    r"|^(?:i'm|i am) (?:fine|good|ok|okay|well|not sure|sure|back|here|sorry)"
    r"(?:[\s,]+(?:thanks|thank you|too|as well))?\W*$",
    re.I,
)
# Instructions to the assistant are not facts about the user.
_REQUEST = re.compile(
    r"^(?:please\b|(?:i|we) (?:want|need|would like|'d like) you\b|"
    r"(?:i|we)'d like you\b|(?:i|we) (?:want|need) to know\b|remind me\b|tell me\b|"
    r"(?:can|could) you\b|let me know\b)",
    re.I,
)
_LEADING_FILLER = re.compile(
    r"^(?:(?:and|but|so|also|well|oh|btw|by the way|actually|anyway|also)\b[\s,]*)+",
    re.I,
)
# Facts of which a person has one at a time: a new one replaces the old.
_SLOTS = [
    ("name", re.compile(r"\b(?:my name is|call me|i'm called|i am called)\b", re.I)),
    (
        "home",
        re.compile(
            r"\b(?:i live|i'm living|i am living|we live|i moved|i've moved|"
            r"i have moved|we moved|i relocated|my home is|i'm based|i am based)\b",
            re.I,
        ),
    ),
    (
        "job",
        re.compile(
            r"\b(?:i work (?:as|at|for)|i'm working (?:as|at|for)|i am working "
            r"(?:as|at|for)|my job is|my occupation|i am employed|i'm employed)\b",
            re.I,
        ),
    ),
    ("age", re.compile(r"\b(?:i'm|i am) \d{1,3} (?:years old|yo)\b|\bmy age\b", re.I)),
    ("birthday", re.compile(r"\bmy birthday is\b", re.I)),
]
# Words by which a forget request names a slot's topic.
_SLOT_TOPICS = {
    "name": {"name", "called"},
    "home": {"home", "live", "living", "address", "city", "moved", "location"},
    "job": {"job", "work", "career", "occupation", "employer", "profession"},
    "age": {"age", "old"},
    "birthday": {"birthday", "born"},
}
_FAVOURITE = re.compile(r"\bmy (?:favou?rite|fav) (\w+)", re.I)

_FORGET_PREFIX = re.compile(
    r"^\s*(?:please\s+)?(?:can you\s+|could you\s+)?(?:forget|delete|remove|erase)"
    r"\s+(?:(?:about|that|the fact that|everything about|all about|anything about|"
    r"what i said about|what you know about|my)\s+)*",
    re.I,
)
_FORGET_TOPIC = re.compile(
    r"\b(?:everything|all|anything)\s+(?:about|regarding|on)\b|\bforget about\b",
    re.I,
)
_STOP_WORDS_TEXT = (
    "a an the i me my we our you your is am are was were be been to of in on at "
    "for and or that this it about everything all anything what with do did"
)
_STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())


def split_clauses(message: str) -> list[str]:
    """Sentences of a message, with clauses joined by 'and I ...' split apart."""
    clauses = []
    for sentence in _SENTENCE_END.split(message):
        for clause in _CLAUSE_SPLIT.split(sentence):
            clause = _LEADING_FILLER.sub("", clause.strip()).strip(" ,")
            if clause:
                clauses.append(clause)
    return clauses


def is_fact_worth_keeping(clause: str) -> bool:
    """A first-person statement that is not a question, small talk or a request."""
    if clause.endswith("?") or _QUESTION_START.match(clause):
        return False
    if _SMALL_TALK.match(clause) or _PHATIC.match(clause) or _REQUEST.match(clause):
        return False
    if len(clause.split()) < 2:
        return False
    return bool(_FIRST_PERSON.search(clause))


def is_statement_worth_keeping(clause: str) -> bool:
    """Any statement with some content: not a question, small talk or a request."""
    if clause.endswith("?") or _QUESTION_START.match(clause):
        return False
    if _SMALL_TALK.match(clause) or _PHATIC.match(clause) or _REQUEST.match(clause):
        return False
    return len(content_words(clause)) >= 2


def slot_of(clause: str) -> str:
    for slot, pattern in _SLOTS:
        if pattern.search(clause):
            return slot
    favourite = _FAVOURITE.search(clause)
    if favourite:
        return f"favourite:{favourite.group(1).lower()}"
    return ""


def to_second_person(text: str) -> str:
    """The user's own words, rewritten to address them ("I am" -> "you are")."""
    replacements = [
        (r"\bI am\b", "you are"),
        (r"\bI'm\b", "you're"),
        (r"\bI was\b", "you were"),
        (r"\bI've\b", "you've"),
        (r"\bI'd\b", "you'd"),
        (r"\bI'll\b", "you'll"),
        (r"\bI\b", "you"),
        (r"\bmyself\b", "yourself"),
        (r"\bmy\b", "your"),
        (r"\bMy\b", "Your"),
        (r"\bmine\b", "yours"),
        (r"\bme\b", "you"),
    ]
    for pattern, replacement in replacements:
        text = re.sub(pattern, replacement, text)
    return text[:1].upper() + text[1:]


def content_words(text: str) -> set[str]:
    return {
        word
        for word in re.findall(r"[a-z0-9']+", text.lower())
        if word not in _STOP_WORDS and len(word) > 1
    }


class OfflineLanguageModel:
    """Rules and templates: works with no model and says so in its replies."""

    name = "offline-rules"
    # Facts come from rules per message, not from a consolidation call.
    consolidates = False

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
        if recalled:
            lines = [f"- {_describe(memory)}" for memory in recalled]
            parts.append("Here is what I remember that relates to your message:")
            parts.extend(lines)
        if remembered:
            parts.append("I will remember:")
            parts.extend(f"- {to_second_person(text)}" for text in remembered)
        if not parts:
            parts.append("I don't have anything stored that relates to this yet.")
        parts.append(NO_MODEL_NOTE)
        return "\n".join(parts)

    def forget_query(self, *, request: str) -> str:
        query = _FORGET_PREFIX.sub("", request).strip(" .!")
        return query or request

    def choose_forgotten(
        self, *, request: str, candidates: list[MemoryView], calls: list | None = None
    ) -> list[str]:
        if _FORGET_TOPIC.search(request):
            # "Forget everything about my job": every memory sharing the topic's
            # words or its slot, or close to it in meaning.
            topic = content_words(self.forget_query(request=request))
            return [
                memory.key
                for memory in candidates
                if memory.score >= settings.LTM_FORGET_TOPIC_MIN_SCORE
                or topic & content_words(memory.text)
                or topic & _SLOT_TOPICS.get(memory.slot, set())
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
