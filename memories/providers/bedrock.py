"""Amazon Bedrock behind our chat and embedding interfaces, through langchain-aws.

Importing langchain_aws takes over half a second and wraps `boto3.client`
process-wide (it adds a user-agent tag), so it is imported inside the provider
constructors: only a process configured for Bedrock pays for it.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError
from django.core.exceptions import ImproperlyConfigured

from ltm_project.deadline import has_time_left
from memories.providers.chat import ChatMessage, ChatModelError, ChatResult, Usage
from memories.providers.embeddings import EmbeddingError, _normalise

DEFAULT_EMBEDDING_MODEL = "amazon.titan-embed-text-v2:0"
TITAN_V2_DIMENSIONS = (256, 512, 1024)

# What a failed call can raise through langchain-aws: botocore's errors, and
# ValueError for what langchain-aws checks itself (an answer without `output`, an
# embedding missing from the body, a permission hint it rewrites).
_CALL_ERRORS = (ClientError, BotoCoreError, ValueError)


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

    def complete(
        self,
        *,
        system: str,
        messages: list[ChatMessage],
        json_schema: dict | None = None,
        schema_name: str = "result",
        max_tokens: int = 1024,
    ) -> ChatResult:
        from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

        conversation = [SystemMessage(content=system)] + [
            HumanMessage(content=m.content)
            if m.role == "user"
            else AIMessage(content=m.content)
            for m in messages
        ]
        options: dict[str, Any] = {"max_tokens": max_tokens}
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
            raise ChatModelError("No time left of this request's budget for Bedrock.")
        try:
            answer = self._model.invoke(conversation, **options)
        except _CALL_ERRORS as exc:
            raise ChatModelError(
                f"Bedrock Converse with {self.model_name} failed: {_describe(exc)}"
            ) from exc

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
        usage = answer.usage_metadata or {}
        return ChatResult(
            content=content,
            usage=Usage(
                model=self.model_name,
                input_tokens=usage.get("input_tokens", 0),
                output_tokens=usage.get("output_tokens", 0),
            ),
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
