"""Chat through OpenAI's chat completions API, or any server that speaks it."""

from __future__ import annotations

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
    ) -> None:
        import openai

        if not api_key:
            raise ImproperlyConfigured(
                "The OpenAI chat model needs an API key: set OPENAI_API_KEY."
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
        if json_schema is not None:
            request["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": schema_name,
                    "schema": json_schema,
                    "strict": True,
                },
            }
        client = self._client_for_this_request()
        try:
            response = client.chat.completions.create(**request)
        except self._openai.OpenAIError as exc:
            raise self._error(exc) from exc

        # The client does not validate responses strictly, so a field the server
        # left out is missing rather than an error.
        choices = getattr(response, "choices", None) or []
        if not choices:
            raise ChatModelError("OpenAI chat returned no choices.")
        message = choices[0].message
        if getattr(message, "refusal", None):
            raise ChatModelError(f"The model refused: {message.refusal}")
        if not message.content:
            raise ChatModelError(
                "OpenAI chat returned an empty answer "
                f"(finish reason {choices[0].finish_reason!r})."
            )
        return ChatResult(
            content=message.content,
            usage=self._usage(request["model"], getattr(response, "usage", None)),
            finish_reason=choices[0].finish_reason or "stop",
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
