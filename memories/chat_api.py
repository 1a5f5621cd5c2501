"""POST /v1/chat/completions: OpenAI's chat completions API, with memory (thin:
validate, call memories/pipeline/chat.py, shape the answer or its stream)."""

import json
import logging
from collections.abc import Iterator

from django.conf import settings
from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import APIView

from ltm_project.errors import api_exception_handler
from memories.api import _ERRORS
from memories.chat_serializers import (
    FINISH_REASONS,
    ChatCompletionEventSerializer,
    ChatCompletionInputSerializer,
    ChatCompletionSerializer,
    ChatUsageSerializer,
)
from memories.pipeline.chat import (
    ChatRequest,
    CompletionChunk,
    chat_complete,
    chat_stream,
)
from memories.providers.chat import (
    ChatMessage,
    ChatModelError,
    ChatModelRejected,
    ChatModelUnavailable,
    Sampling,
)
from memories.serializers import ErrorSerializer

logger = logging.getLogger(__name__)


class ModelUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "model_unavailable"
    default_detail = (
        "The language model could not be reached, was overloaded or could not "
        "answer in the time of one request; nothing was stored. Retry later."
    )


class ModelFailed(exceptions.APIException):
    status_code = status.HTTP_502_BAD_GATEWAY
    default_code = "model_error"
    default_detail = "The language model failed to answer; nothing was stored."


class ModelRejected(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "model_rejected"


def model_error(exc: ChatModelError) -> exceptions.APIException:
    """The API's error for a model that did not answer. The operator's side of
    a failure (a refused key, an unknown model) is logged, not shown."""
    logger.warning("Chat completion failed: %s", exc)
    if isinstance(exc, ChatModelRejected):
        return ModelRejected(
            f"The language model refused the request; nothing was stored. {exc}"
        )
    if isinstance(exc, ChatModelUnavailable):
        return ModelUnavailable()
    return ModelFailed()


# The one definition of the usage's shape, for the response and the last chunk.
_USAGE = ChatUsageSerializer()


def _finish_reason(reason: str) -> str:
    # A compatible server may name its own reasons; clients know these three.
    return reason if reason in FINISH_REASONS else "stop"


def chunk_body(chunk: CompletionChunk, *, include_usage: bool) -> dict | None:
    """A chunk as OpenAI streams it (chat.completion.chunk), or None for the
    usage chunk when the client did not ask for it. Built per piece of text
    and sent as a server-sent event, outside the OpenAPI schema."""
    body = {
        "id": chunk.id,
        "object": "chat.completion.chunk",
        "created": chunk.created,
        "model": chunk.model,
        "choices": [],
    }
    if chunk.usage is not None:
        if not include_usage:
            return None
        body["usage"] = _USAGE.to_representation(chunk.usage)
        return body
    delta = {}
    if chunk.role is not None:
        delta["role"] = chunk.role
    if chunk.text is not None:
        delta["content"] = chunk.text
    body["choices"] = [
        {
            "index": 0,
            "delta": delta,
            "finish_reason": chunk.finish_reason
            and _finish_reason(chunk.finish_reason),
            "logprobs": None,
        }
    ]
    if include_usage:
        body["usage"] = None
    return body


def _event(body: dict) -> bytes:
    return b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\n"


def event_stream(
    chunks: Iterator[CompletionChunk], *, include_usage: bool
) -> Iterator[bytes]:
    """Server-sent events of the chunks, ending with `data: [DONE]`. A failure
    once the stream has begun ends it with one event in the API's error shape
    (the `openai` client raises it as an APIError), without [DONE]."""
    try:
        for chunk in chunks:
            body = chunk_body(chunk, include_usage=include_usage)
            if body is not None:
                yield _event(body)
    except Exception as exc:  # the status is sent: the error goes in the stream
        if isinstance(exc, ChatModelError):
            exc = model_error(exc)
        yield _event(api_exception_handler(exc, {}).data)
        return
    finally:
        chunks.close()
    yield b"data: [DONE]\n\n"


def _request_of(data: dict) -> ChatRequest:
    limits = [
        value
        for value in (data.get("max_tokens"), data.get("max_completion_tokens"))
        if value is not None
    ]
    return ChatRequest(
        user_id=data["user"],
        messages=[
            ChatMessage(
                "system" if item["role"] == "developer" else item["role"],
                item["content"],
            )
            for item in data["messages"]
        ],
        model=data["model"],
        max_tokens=min(limits) if limits else None,
        sampling=Sampling(
            temperature=data.get("temperature"),
            top_p=data.get("top_p"),
            stop=data.get("stop") or (),
            presence_penalty=data.get("presence_penalty"),
            frequency_penalty=data.get("frequency_penalty"),
            seed=data.get("seed"),
        ),
    )


class ChatCompletionsView(APIView):
    """OpenAI's chat completions, answered with the end user's memories."""

    @property
    def max_body_bytes(self) -> int:
        # A chat client sends the whole conversation each time.
        return settings.LTM_MAX_CHAT_BYTES

    def perform_content_negotiation(self, request, force=False):
        # Errors are JSON whatever the client accepts (an `Accept:
        # text/event-stream` too); a stream is written apart from renderers.
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        operation_id="chat_completions_create",
        summary="Chat completion with memory (OpenAI-compatible)",
        description="OpenAI's chat completions API: point the official `openai` "
        "client at `<LTM>/v1` with an LTM token as its API key and name the end "
        "user in `user`. The memories recalled for the last (user) message reach "
        "the model as data inside that message, never as instructions; the "
        "conversation goes to the operator's configured model; once the answer "
        "is complete, that message is remembered as POST /message remembers one. "
        "A model that cannot answer leaves nothing stored.",
        request=ChatCompletionInputSerializer,
        responses={
            (200, "application/json"): ChatCompletionSerializer,
            (200, "text/event-stream"): OpenApiResponse(
                ChatCompletionEventSerializer,
                description="With stream: true, server-sent events: `data: "
                "{chat.completion.chunk}` per piece of the answer, then `data: "
                "[DONE]`.",
            ),
            400: OpenApiResponse(
                ErrorSerializer,
                description="invalid_input (e.g. no `user`), malformed_json, or "
                "model_rejected: the model refused the conversation as sent "
                "(too long for it, say).",
            ),
            **{code: _ERRORS[code] for code in (401, 413, 415, 429)},
            502: OpenApiResponse(
                ErrorSerializer,
                description="model_error: the model failed to answer (nothing stored).",
            ),
            503: OpenApiResponse(
                ErrorSerializer,
                description="model_unavailable: the model could not be reached, "
                "was overloaded or too slow; provider_unavailable: recall failed; "
                "database_busy. Nothing stored.",
            ),
        },
        examples=[
            OpenApiExample(
                "A question",
                request_only=True,
                value={
                    "model": "gpt-4o-mini",
                    "user": "u1",
                    "messages": [
                        {"role": "system", "content": "You are a travel agent."},
                        {"role": "user", "content": "Where should I go this May?"},
                    ],
                },
            )
        ],
        tags=["chat"],
    )
    def post(self, request):
        data = ChatCompletionInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        chat = _request_of(data.validated_data)
        try:
            if data.validated_data["stream"]:
                chunks = chat_stream(tenant=request.user, request=chat)
            else:
                completion = chat_complete(tenant=request.user, request=chat)
        except ChatModelError as exc:
            raise model_error(exc) from exc
        if data.validated_data["stream"]:
            options = data.validated_data.get("stream_options") or {}
            response = StreamingHttpResponse(
                event_stream(chunks, include_usage=options.get("include_usage", False)),
                content_type="text/event-stream",
            )
            response["Cache-Control"] = "no-cache"
            # Proxies such as nginx pass each event on at once.
            response["X-Accel-Buffering"] = "no"
            return response
        output = ChatCompletionSerializer(
            {
                "id": completion.id,
                "object": "chat.completion",
                "created": completion.created,
                "model": completion.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": completion.content,
                        },
                        "finish_reason": _finish_reason(completion.finish_reason),
                    }
                ],
                "usage": completion.usage,
            }
        )
        return Response(output.data, status=status.HTTP_200_OK)
