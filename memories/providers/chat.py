"""Chat models behind one small interface: OpenAI (or compatible) and Bedrock.

A provider sends one conversation and returns the text the model wrote, with the
tokens it cost. With a JSON schema, the provider asks the model for a JSON object
of that shape (OpenAI: structured output; Bedrock: a forced tool call) and returns
the object as JSON text; checking it against the schema is the caller's job, since
no provider can be trusted to have done it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol


class ChatModelError(RuntimeError):
    """The model could not be reached or kept failing (after bounded retries)."""


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
    role: Literal["user", "assistant"]
    content: str


@dataclass(frozen=True)
class ChatResult:
    content: str  # the model's text; JSON text when a schema was asked for
    usage: Usage


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
    ) -> ChatResult:
        """One call to the model. Raises ChatModelError when it cannot answer."""
