"""Amazon Bedrock behind our chat and embedding interfaces, through langchain-aws.

Importing langchain_aws takes over half a second and wraps `boto3.client`
process-wide (it adds a user-agent tag), so it is imported inside the provider
constructors: only a process configured for Bedrock pays for it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError
from django.core.exceptions import ImproperlyConfigured

from ltm_project.deadline import has_time_left, time_left
from memories.providers.chat import (
    ChatDelta,
    ChatMessage,
    ChatModelError,
    ChatModelRejected,
    ChatModelUnavailable,
    ChatResult,
    Sampling,
    Usage,
)
from memories.providers.embeddings import EmbeddingError, _normalise

DEFAULT_EMBEDDING_MODEL = "amazon.titan-embed-text-v2:0"
TITAN_V2_DIMENSIONS = (256, 512, 1024)

# What a failed call can raise through langchain-aws: botocore's errors, and
# ValueError for what langchain-aws checks itself (an answer without `output`, an
# embedding missing from the body, a permission hint it rewrites).
_CALL_ERRORS = (ClientError, BotoCoreError, ValueError)
# Error codes worth retrying later (the model is busy or not ready), and the
# one that says the request itself was refused (too long, an option refused).
_UNAVAILABLE_CODES = {
    "ThrottlingException",
    "ServiceUnavailableException",
    "ModelNotReadyException",
    "ModelTimeoutException",
    "InternalServerException",
    "ModelStreamErrorException",
}
_REJECTED_CODES = {"ValidationException"}
# Converse's stop reasons in OpenAI's words.
_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "content_filtered": "content_filter",
    "guardrail_intervened": "content_filter",
}


def bedrock_runtime_client(
    *,
    region: str,
    endpoint_url: str | None = None,
    connect_timeout: float = 10.0,
    read_timeout: float = 30.0,
    max_attempts: int = 3,
):
    """A boto3 `bedrock-runtime` client; credentials come from the standard chain."""
    if not region:
        raise ImproperlyConfigured(
            "Bedrock needs a region: set LTM_BEDROCK_REGION (for example us-east-1)."
        )
    import boto3
    from botocore.config import Config

    return boto3.client(
        "bedrock-runtime",
        region_name=region,
        endpoint_url=endpoint_url or None,
        config=Config(
            # Attempts in all, the first included. botocore retries throttling,
            # 5xx and connection errors; adaptive mode also slows this client
            # down after it has been throttled.
            retries={"total_max_attempts": max_attempts, "mode": "adaptive"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        ),
    )


def _describe(exc: Exception) -> str:
    """The AWS error code (or exception type) and message, for our own errors."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code") or type(exc).__name__
        return f"{code}: {error.get('Message') or exc}"
    return f"{type(exc).__name__}: {exc}"


def _chat_error(exc: Exception, model_id: str) -> ChatModelError:
    """Our error for what a Converse call raised."""
    kind = ChatModelError
    if isinstance(exc, ClientError):
        # Errors inside an event stream spell their codes in lower camel case.
        code = exc.response.get("Error", {}).get("Code", "")
        code = code[:1].upper() + code[1:]
        if code in _UNAVAILABLE_CODES:
            kind = ChatModelUnavailable
        elif code in _REJECTED_CODES:
            kind = ChatModelRejected
    elif isinstance(exc, BotoCoreError | ConnectionError):
        # Timeouts, connections refused or cut, a stream ended early.
        kind = ChatModelUnavailable
    return kind(f"Bedrock Converse with {model_id} failed: {_describe(exc)}")


class BedrockChatModel:
    """A chat model on Bedrock's Converse API (ChatBedrockConverse)."""

    def __init__(
        self,
        *,
        model_id: str,
        region: str,
        endpoint_url: str | None = None,
        timeout: float = 30.0,
        max_attempts: int = 3,
        client: Any = None,
    ) -> None:
        if not model_id:
            raise ImproperlyConfigured("Bedrock chat needs a model id.")
        if client is None:
            client = bedrock_runtime_client(
                region=region,
                endpoint_url=endpoint_url,
                connect_timeout=timeout,
                read_timeout=timeout,
                max_attempts=max_attempts,
            )
        from langchain_aws import ChatBedrockConverse

        try:
            self._model = ChatBedrockConverse(
                client=client,
                model=model_id,
                temperature=0,
                max_tokens=1024,  # each call passes its own
                # We never stream; saying so also spares the warning langchain-aws
                # logs for models it does not know to stream.
                disable_streaming=True,
            )
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            # A model ARN, for one, needs a provider langchain-aws cannot infer.
            raise ImproperlyConfigured(
                f"Bedrock chat model {model_id!r} is not usable: {exc}"
            ) from exc
        self.client = client
        self.model_name = model_id
        # Models answering clients' conversations (chat completions), by id:
        # they stream, and leave what the client did not choose to the model.
        self._conversers: dict[str, Any] = {}
        self._conversers_lock = threading.Lock()

    def _converser(self, model_id: str):
        with self._conversers_lock:
            if model_id not in self._conversers:
                from langchain_aws import ChatBedrockConverse

                try:
                    self._conversers[model_id] = ChatBedrockConverse(
                        client=self.client,
                        model=model_id,
                        temperature=None,
                        disable_streaming=False,
                    )
                except ValueError as exc:
                    raise ChatModelError(
                        f"Bedrock chat model {model_id!r} is not usable: {exc}"
                    ) from exc
            return self._conversers[model_id]

    @staticmethod
    def _conversation(system: str, messages: list[ChatMessage]) -> list:
        from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

        # Converse takes the system messages apart from the turns, in order.
        kinds = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
        conversation = [SystemMessage(content=system)] if system else []
        return conversation + [kinds[m.role](content=m.content) for m in messages]

    @staticmethod
    def _options(max_tokens: int, sampling: Sampling | None) -> dict[str, Any]:
        options: dict[str, Any] = {"max_tokens": max_tokens}
        if sampling is not None:
            chosen = {
                "temperature": sampling.temperature,
                "top_p": sampling.top_p,
                "stop": list(sampling.stop) or None,
            }
            options.update(
                {name: value for name, value in chosen.items() if value is not None}
            )
        return options

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
        conversation = self._conversation(system, messages)
        options = self._options(max_tokens, sampling)
        if json_schema is not None:
            # Handed to Converse as it is. `bind_tools` would rewrite the schema on
            # the way (it drops `null` from nullable types and renames `$defs`
            # keys to camelCase without updating the `$ref`s to them) and refuses
            # a forced tool for models missing from langchain-aws's own list.
            options["toolConfig"] = {
                "tools": [
                    {
                        "toolSpec": {
                            "name": schema_name,
                            "description": f"Give the answer as a {schema_name} "
                            "object of this shape.",
                            "inputSchema": {"json": json_schema},
                        }
                    }
                ],
                "toolChoice": {"tool": {"name": schema_name}},
            }
        if not has_time_left():
            raise ChatModelUnavailable(
                "No time left of this request's budget for Bedrock."
            )
        model_id = model or self.model_name
        chat = (
            self._model
            if sampling is None and model_id == self.model_name
            else self._converser(model_id)
        )
        try:
            answer = chat.invoke(conversation, **options)
        except _CALL_ERRORS as exc:
            raise _chat_error(exc, model_id) from exc

        stop_reason = answer.response_metadata.get("stopReason", "")
        if json_schema is not None:
            calls = [c for c in answer.tool_calls if c["name"] == schema_name]
            if not calls:
                raise ChatModelError(
                    f"{self.model_name} did not call the {schema_name!r} tool "
                    f"(stop reason {stop_reason!r})."
                )
            if stop_reason == "max_tokens":
                raise ChatModelError(
                    f"{self.model_name} ran out of tokens ({max_tokens}) while "
                    f"writing the {schema_name!r} object."
                )
            content = json.dumps(calls[0]["args"])
        else:
            content = answer.text
            if not content:
                raise ChatModelError(
                    f"{self.model_name} gave no text (stop reason {stop_reason!r})."
                )
        return ChatResult(
            content=content,
            usage=_usage(model_id, answer.usage_metadata),
            finish_reason=_FINISH_REASONS.get(stop_reason, "stop"),
        )

    def stream(
        self,
        *,
        system: str,
        messages: list[ChatMessage],
        max_tokens: int = 1024,
        sampling: Sampling | None = None,
        model: str | None = None,
    ) -> Iterator[ChatDelta]:
        conversation = self._conversation(system, messages)
        options = self._options(max_tokens, sampling)
        if not has_time_left():
            raise ChatModelUnavailable(
                "No time left of this request's budget for Bedrock."
            )
        model_id = model or self.model_name
        chat = self._converser(model_id)
        stop_reason = usage = None
        try:
            # ConverseStream: text deltas, then messageStop (the stop reason)
            # and metadata (the usage).
            for chunk in chat.stream(conversation, **options):
                if chunk.text:
                    yield ChatDelta(text=chunk.text)
                stop_reason = chunk.response_metadata.get("stopReason") or stop_reason
                usage = chunk.usage_metadata or usage
                left = time_left()
                if left is not None and left <= 0:
                    raise ChatModelUnavailable(
                        "The model's answer took longer than the time one request "
                        "may take."
                    )
        except (*_CALL_ERRORS, ConnectionError) as exc:
            raise _chat_error(exc, model_id) from exc
        yield ChatDelta(
            finish_reason=_FINISH_REASONS.get(stop_reason or "", "stop"),
            usage=_usage(model_id, usage),
        )


def _usage(model_id: str, usage: dict | None) -> Usage:
    usage = usage or {}
    return Usage(
        model=model_id,
        input_tokens=usage.get("input_tokens", 0),
        output_tokens=usage.get("output_tokens", 0),
    )


class BedrockEmbedder:
    """Embeddings from a Bedrock model, Amazon Titan Text Embeddings v2 by default."""

    def __init__(
        self,
        *,
        region: str,
        model_id: str = DEFAULT_EMBEDDING_MODEL,
        dimension: int = 1024,
        endpoint_url: str | None = None,
        timeout: float = 30.0,
        max_attempts: int = 3,
        client: Any = None,
    ) -> None:
        if "titan-embed-text-v2" in model_id and dimension not in TITAN_V2_DIMENSIONS:
            choices = ", ".join(map(str, TITAN_V2_DIMENSIONS))
            raise ImproperlyConfigured(
                f"{model_id} makes vectors of {choices} dimensions, not {dimension}."
            )
        if client is None:
            client = bedrock_runtime_client(
                region=region,
                endpoint_url=endpoint_url,
                connect_timeout=timeout,
                read_timeout=timeout,
                max_attempts=max_attempts,
            )
        from langchain_aws import BedrockEmbeddings

        # model_kwargs go into every request body as they are; Titan v2 reads
        # `dimensions` and `normalize` there.
        self._embeddings = BedrockEmbeddings(
            client=client,
            model_id=model_id,
            model_kwargs={"dimensions": dimension, "normalize": True},
        )
        self.client = client
        self.model_name = model_id
        self.dimension = dimension

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # Titan takes one text per InvokeModel call (that is how Bedrock serves
        # it; there is no batch form), so n texts cost n calls, made in turn.
        if not has_time_left():
            raise EmbeddingError("No time left of this request's budget for Bedrock.")
        try:
            rows = self._embeddings.embed_documents(texts)
        except _CALL_ERRORS as exc:
            raise EmbeddingError(
                f"Bedrock embeddings with {self.model_name} failed: {_describe(exc)}"
            ) from exc
        lengths = sorted({len(row) for row in rows})
        if len(rows) != len(texts) or lengths != [self.dimension]:
            raise EmbeddingError(
                f"Expected {len(texts)} embeddings of dimension {self.dimension}, "
                f"got {len(rows)} of dimension {', '.join(map(str, lengths))}."
            )
        return _normalise(np.asarray(rows, dtype=np.float32))
