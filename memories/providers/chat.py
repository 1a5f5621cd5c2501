"""Chat models behind one small interface: OpenAI (or compatible) and Bedrock.

A provider sends one conversation and returns the text the model wrote, with the
tokens it cost, whole (`complete`) or as it is written (`stream`). With a JSON
schema, the provider asks the model for a JSON object of that shape (OpenAI:
structured output; Bedrock: a forced tool call) and returns the object as JSON
text; checking it against the schema is the caller's job, since no provider can
be trusted to have done it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, Protocol


class ChatModelError(RuntimeError):
    """The model could not be reached or kept failing (after bounded retries)."""


class ChatModelUnavailable(ChatModelError):
    """The model could not be reached, was overloaded, or could not answer in
    the time left: worth retrying later."""


class ChatModelRejected(ChatModelError):
    """The model refused the request as sent (a conversation too long for it, an
    option it does not take): the caller's to change, not a fault of the model."""


@dataclass(frozen=True)
class Usage:
    """Tokens one call cost, as the provider reported them."""

    model: str
    input_tokens: int
    output_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class ChatMessage:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class Sampling:
    """How the model writes, as a caller chose; None leaves the model's default.

    Bedrock's Converse API takes temperature, top_p and stop sequences; the
    penalties and the seed reach OpenAI-compatible servers only.
    """

    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None


@dataclass(frozen=True)
class ChatResult:
    content: str  # the model's text; JSON text when a schema was asked for
    usage: Usage
    # Why the model stopped, in OpenAI's words: stop, length or content_filter.
    finish_reason: str = "stop"


@dataclass(frozen=True)
class ChatDelta:
    """A piece of a streamed answer. The last one has no text: it says why the
    model stopped and what the whole answer cost."""

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None


class ChatModel(Protocol):
    model_name: str

    def complete(
        self,
        *,
        system: str,
        messages: list[ChatMessage],
        json_schema: dict | None = None,
        schema_name: str = "result",
        max_tokens: int = 1024,
        sampling: Sampling | None = None,
        model: str | None = None,
    ) -> ChatResult:
        """One call to the model. Raises ChatModelError when it cannot answer.

        `system` (none when empty) comes before `messages`, whose own system
        messages stay where they are. `sampling` None means the provider's
        settings for the service's own calls (temperature 0); `model` None the
        provider's configured model.
        """

    def stream(
        self,
        *,
        system: str,
        messages: list[ChatMessage],
        max_tokens: int = 1024,
        sampling: Sampling | None = None,
        model: str | None = None,
    ) -> Iterator[ChatDelta]:
        """The answer as the model writes it: deltas of text, then one delta
        with the finish reason and the usage. The call is made when the first
        delta is asked for; a failure, then or later, is a ChatModelError."""
