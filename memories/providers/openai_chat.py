"""Chat through OpenAI's chat completions API, or any server that speaks it."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator

from django.core.exceptions import ImproperlyConfigured

from ltm_project.deadline import TimeBudgetSpent, call_limits, time_left
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

logger = logging.getLogger(__name__)

# The ways a server is asked for JSON of a schema, most reliable first:
# - json_schema: response_format json_schema, the output constrained to the
#   schema (OpenAI, llama.cpp's llama-server, vLLM, Ollama, LM Studio);
# - json_object: response_format json_object carrying the schema, which
#   llama-cpp-python's server turns into a grammar (elsewhere: any JSON);
# - tool: one tool whose parameters are the schema, its call required;
# - prompt: the schema in the prompt only; the answer's first JSON object.
# Every mode but json_schema also puts the schema in the system prompt.
STRUCTURED_OUTPUT_MODES = ("json_schema", "json_object", "tool", "prompt")
STRUCTURED_OUTPUT_SETTINGS = ("auto", *STRUCTURED_OUTPUT_MODES)
# What a server's refusal names when it is the mode it refuses (llama-cpp-python:
# HTTP 500 "Input should be 'text' or 'json_object'" for json_schema).
_MODE_WORDS = {
    "json_schema": ("response_format", "json_schema", "'text'", "schema"),
    "json_object": ("response_format", "json_object", "'text'", "schema"),
    "tool": ("tool", "function"),
}
# Keywords bounding an answer's size and form, some of which strict servers
# refuse (OpenAI: "'maxLength' is not permitted"); refused, they are dropped
# from every schema, once a process, and the schema is asked for again.
_BOUNDING_KEYWORDS = ("maxLength", "minLength", "maxItems", "minItems", "pattern")
# Statuses with which servers refuse a mode they do not take; outages (502,
# 503, 504), rate limits and authentication say nothing about the mode.
_MODE_REFUSED = {400, 404, 415, 422, 500, 501}

# Statuses that say the request itself was refused (too long a conversation,
# an option the model does not take), and those worth retrying later.
_REJECTED = {400, 413, 422}
_UNAVAILABLE = {408, 409, 429}


class OpenAIChatModel:
    """A ChatModel on the official `openai` client (chat.completions.create)."""

    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        base_url: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 2,
        temperature: float = 0.0,
        structured_output: str = "auto",
    ) -> None:
        import openai

        if not api_key:
            raise ImproperlyConfigured(
                "The OpenAI chat model needs an API key: set OPENAI_API_KEY."
            )
        if structured_output not in STRUCTURED_OUTPUT_SETTINGS:
            raise ImproperlyConfigured(
                f"Unknown LTM_OPENAI_STRUCTURED_OUTPUT {structured_output!r}: use "
                f"{', '.join(STRUCTURED_OUTPUT_SETTINGS)}."
            )
        # The client itself retries 408, 409, 429, 5xx, timeouts and connection
        # errors up to max_retries times, with backoff (or the server's
        # retry-after), and gives each try `timeout` seconds.
        self._client = openai.OpenAI(
            api_key=api_key,
            base_url=base_url or None,
            timeout=timeout,
            max_retries=max_retries,
        )
        self._openai = openai
        self._timeout = timeout
        self._max_retries = max_retries
        self.model_name = model
        self._temperature = temperature
        self._base_url = base_url or "OpenAI"
        self._negotiates = structured_output == "auto"
        self.structured_output = (
            STRUCTURED_OUTPUT_MODES[0] if self._negotiates else structured_output
        )
        self._mode_lock = threading.Lock()
        self.schema_bounds = True

    def _request(
        self,
        *,
        system: str,
        messages: list[ChatMessage],
        max_tokens: int,
        sampling: Sampling | None,
        model: str | None,
    ) -> dict:
        # "system" rather than "developer": OpenAI takes both, but several
        # OpenAI-compatible servers reject "developer".
        sent = [{"role": "system", "content": system}] if system else []
        sent += [{"role": m.role, "content": m.content} for m in messages]
        request = {
            "model": model or self.model_name,
            "messages": sent,
            # OpenAI now prefers max_completion_tokens (and requires it for
            # reasoning models), but most OpenAI-compatible servers (vLLM,
            # Ollama, LiteLLM proxies...) only know max_tokens.
            "max_tokens": max_tokens,
        }
        if sampling is None:
            request["temperature"] = self._temperature
            return request
        chosen = {
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "stop": list(sampling.stop) or None,
            "presence_penalty": sampling.presence_penalty,
            "frequency_penalty": sampling.frequency_penalty,
            "seed": sampling.seed,
        }
        request.update(
            {name: value for name, value in chosen.items() if value is not None}
        )
        return request

    def _client_for_this_request(self):
        try:
            timeout, retries = call_limits(self._timeout, self._max_retries)
        except TimeBudgetSpent as exc:
            raise ChatModelUnavailable(
                f"No time left to ask the model: {exc}."
            ) from exc
        return self._client.with_options(timeout=timeout, max_retries=retries)

    def _error(self, exc: Exception) -> ChatModelError:
        """Our error for what the client raised."""
        openai = self._openai
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            kind = ChatModelError
            if status in _REJECTED:
                kind = ChatModelRejected
            elif status in _UNAVAILABLE or status >= 500:
                kind = ChatModelUnavailable
            return kind(f"OpenAI chat failed with HTTP {status}: {exc.message}")
        if isinstance(exc, openai.APITimeoutError):
            return ChatModelUnavailable("OpenAI chat timed out.")
        if isinstance(exc, openai.APIConnectionError):
            return ChatModelUnavailable(f"Could not reach OpenAI chat: {exc}")
        return ChatModelError(f"OpenAI chat failed: {exc}")

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
        request = self._request(
            system=system,
            messages=messages,
            max_tokens=max_tokens,
            sampling=sampling,
            model=model,
        )
        if json_schema is None:
            response = self._create(request)
            return self._result(request, response, self._content(response))
        while True:
            mode, bounded = self.structured_output, self.schema_bounds
            schema = json_schema if bounded else unbounded_schema(json_schema)
            try:
                response = self._create(
                    _with_structured_output(request, mode, schema, schema_name)
                )
            except ChatModelError as exc:
                if (bounded and self._drop_bounds(exc)) or self._next_mode(mode, exc):
                    continue
                raise
            return self._result(request, response, _structured_content(response, mode))

    def _create(self, request: dict):
        client = self._client_for_this_request()
        try:
            return client.chat.completions.create(**request)
        except self._openai.OpenAIError as exc:
            raise self._error(exc) from exc

    def _drop_bounds(self, error: ChatModelError) -> bool:
        """True, once, when the server refused a bounding keyword of the schema."""
        said = _refusal(error)
        if said is None or not any(word in said for word in _BOUNDING_KEYWORDS):
            return False
        with self._mode_lock:
            if self.schema_bounds:
                self.schema_bounds = False
                logger.warning(
                    "The model server at %s refused a bound of the answer's schema "
                    "(%s); asking model %s without %s from now on in this process.",
                    self._base_url,
                    said[:300],
                    self.model_name,
                    ", ".join(_BOUNDING_KEYWORDS),
                )
        return True

    def _next_mode(self, mode: str, error: ChatModelError) -> bool:
        """In auto, moves to the next mode when the server refused this one;
        True when the call is worth making again."""
        if not self._negotiates or mode == STRUCTURED_OUTPUT_MODES[-1]:
            return False
        said = _refusal(error)
        if said is None or not any(word in said.lower() for word in _MODE_WORDS[mode]):
            return False
        status = error.__cause__.status_code
        with self._mode_lock:
            if self.structured_output == mode:
                following = STRUCTURED_OUTPUT_MODES[
                    STRUCTURED_OUTPUT_MODES.index(mode) + 1
                ]
                self.structured_output = following
                logger.warning(
                    "The model server at %s refused structured output by %s (HTTP "
                    "%s: %s); asking model %s by %s from now on in this process.",
                    self._base_url,
                    mode,
                    status,
                    said[:300],
                    self.model_name,
                    following,
                )
        return True

    def _content(self, response) -> str:
        message = _first_message(response)
        if not message.content:
            raise ChatModelError(
                "OpenAI chat returned an empty answer "
                f"(finish reason {response.choices[0].finish_reason!r})."
            )
        return message.content

    def _result(self, request: dict, response, content: str) -> ChatResult:
        return ChatResult(
            content=content,
            usage=self._usage(request["model"], getattr(response, "usage", None)),
            finish_reason=response.choices[0].finish_reason or "stop",
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
        request = self._request(
            system=system,
            messages=messages,
            max_tokens=max_tokens,
            sampling=sampling,
            model=model,
        )
        client = self._client_for_this_request()
        finish_reason = usage = None
        try:
            # The usage comes in a last chunk of its own, only when asked for.
            with client.chat.completions.create(
                **request, stream=True, stream_options={"include_usage": True}
            ) as chunks:
                for chunk in chunks:
                    usage = getattr(chunk, "usage", None) or usage
                    for choice in getattr(chunk, "choices", None) or []:
                        if choice.index != 0:
                            continue
                        if choice.delta and choice.delta.content:
                            yield ChatDelta(text=choice.delta.content)
                        finish_reason = choice.finish_reason or finish_reason
                    left = time_left()
                    if left is not None and left <= 0:
                        raise ChatModelUnavailable(
                            "The model's answer took longer than the time one "
                            "request may take."
                        )
        except self._openai.OpenAIError as exc:
            raise self._error(exc) from exc
        if finish_reason is None:
            raise ChatModelUnavailable(
                "The model's stream ended before its answer did (no finish reason)."
            )
        yield ChatDelta(
            finish_reason=finish_reason, usage=self._usage(request["model"], usage)
        )

    @staticmethod
    def _usage(model: str, usage) -> Usage:
        # Some OpenAI-compatible servers send no usage: count nothing rather
        # than fail an answer we have.
        return Usage(
            model=model,
            input_tokens=(usage.prompt_tokens or 0) if usage else 0,
            output_tokens=(usage.completion_tokens or 0) if usage else 0,
        )


def _refusal(error: ChatModelError) -> str | None:
    """What the server said refusing the request with a status servers give
    to a way of asking they do not take; None for any other failure."""
    cause = error.__cause__
    if getattr(cause, "status_code", None) not in _MODE_REFUSED:
        return None
    body = json.dumps(getattr(cause, "body", None), default=str)
    return f"{getattr(cause, 'message', '')} {body}"


def unbounded_schema(schema):
    """The schema without _BOUNDING_KEYWORDS, at every depth."""
    if isinstance(schema, dict):
        return {
            key: unbounded_schema(value)
            for key, value in schema.items()
            if key not in _BOUNDING_KEYWORDS
        }
    if isinstance(schema, list):
        return [unbounded_schema(item) for item in schema]
    return schema


def _first_message(response):
    # The client does not validate responses strictly, so a field the server
    # left out is missing rather than an error.
    choices = getattr(response, "choices", None) or []
    if not choices:
        raise ChatModelError("OpenAI chat returned no choices.")
    message = choices[0].message
    if getattr(message, "refusal", None):
        raise ChatModelError(f"The model refused: {message.refusal}")
    return message


def schema_instruction(json_schema: dict) -> str:
    return (
        "Answer with only a JSON object that follows this JSON schema, and "
        f"nothing else:\n{json.dumps(json_schema, separators=(',', ':'))}"
    )


def _with_structured_output(
    request: dict, mode: str, json_schema: dict, schema_name: str
) -> dict:
    """The request asking for JSON of the schema in that mode."""
    request = dict(request)
    if mode == "json_schema":
        request["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": schema_name, "schema": json_schema, "strict": True},
        }
        return request
    instruction = schema_instruction(json_schema)
    messages = list(request["messages"])
    if messages and messages[0]["role"] == "system":
        messages[0] = {
            **messages[0],
            "content": f"{messages[0]['content']}\n\n{instruction}",
        }
    else:
        messages.insert(0, {"role": "system", "content": instruction})
    request["messages"] = messages
    if mode == "json_object":
        request["response_format"] = {"type": "json_object", "schema": json_schema}
    elif mode == "tool":
        request["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": schema_name,
                    "description": "Give the answer.",
                    "parameters": json_schema,
                },
            }
        ]
        # One tool, its call required: the forced call, in the form more
        # servers take than a named tool_choice.
        request["tool_choice"] = "required"
    return request


def _structured_content(response, mode: str) -> str:
    """The answer's JSON text: the tool call's arguments in tool mode, else the
    content; its first JSON object when the model wrote more around it."""
    message = _first_message(response)
    if mode == "tool":
        for call in getattr(message, "tool_calls", None) or []:
            arguments = getattr(getattr(call, "function", None), "arguments", None)
            if arguments is not None:
                if not isinstance(arguments, str):
                    arguments = json.dumps(arguments)
                return first_json_object(arguments) or arguments
    if not message.content:
        raise ChatModelError(
            "OpenAI chat returned an empty answer "
            f"(finish reason {response.choices[0].finish_reason!r})."
        )
    return first_json_object(message.content) or message.content


def first_json_object(text: str) -> str | None:
    """The first JSON object in a text, as models write it inside prose or a
    code fence, re-serialised; None when there is none. Only objects that
    begin the text, a line or a fence are tried, so an answer cut short is
    not mistaken for the first object nested in it."""
    decoder = json.JSONDecoder()
    for match in _OBJECT_START.finditer(text):
        try:
            value, _ = decoder.raw_decode(text, match.end() - 1)
        except ValueError:
            continue
        if isinstance(value, dict):
            return json.dumps(value, ensure_ascii=False)
    return None


# A "{" that is the text's first, or the first of a line, or after a fence.
_OBJECT_START = re.compile(r"\A[^{]*\{|^\{|```(?:json)?\s*\{", re.MULTILINE)
