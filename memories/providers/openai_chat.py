"""Chat through OpenAI's chat completions API, or any server that speaks it."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from ltm_project.deadline import TimeBudgetSpent, call_limits
from memories.providers.chat import ChatMessage, ChatModelError, ChatResult, Usage


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

    def complete(
        self,
        *,
        system: str,
        messages: list[ChatMessage],
        json_schema: dict | None = None,
        schema_name: str = "result",
        max_tokens: int = 1024,
    ) -> ChatResult:
        # "system" rather than "developer": OpenAI takes both, but several
        # OpenAI-compatible servers reject "developer".
        sent = [{"role": "system", "content": system}]
        sent += [{"role": m.role, "content": m.content} for m in messages]
        options = {}
        if json_schema is not None:
            options["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": schema_name,
                    "schema": json_schema,
                    "strict": True,
                },
            }
        try:
            timeout, retries = call_limits(self._timeout, self._max_retries)
        except TimeBudgetSpent as exc:
            raise ChatModelError(f"No time left to ask the model: {exc}.") from exc
        client = self._client.with_options(timeout=timeout, max_retries=retries)
        try:
            response = client.chat.completions.create(
                model=self.model_name,
                messages=sent,
                temperature=self._temperature,
                # OpenAI now prefers max_completion_tokens (and requires it for
                # reasoning models), but most OpenAI-compatible servers (vLLM,
                # Ollama, LiteLLM proxies...) only know max_tokens.
                max_tokens=max_tokens,
                **options,
            )
        except self._openai.APIStatusError as exc:
            raise ChatModelError(
                f"OpenAI chat failed with HTTP {exc.status_code}: {exc.message}"
            ) from exc
        except self._openai.APITimeoutError as exc:
            raise ChatModelError("OpenAI chat timed out.") from exc
        except self._openai.APIConnectionError as exc:
            raise ChatModelError(f"Could not reach OpenAI chat: {exc}") from exc
        except self._openai.OpenAIError as exc:
            raise ChatModelError(f"OpenAI chat failed: {exc}") from exc

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
        # Some OpenAI-compatible servers send no usage: count nothing rather
        # than fail an answer we have.
        usage = getattr(response, "usage", None)
        return ChatResult(
            content=message.content,
            usage=Usage(
                model=self.model_name,
                input_tokens=(usage.prompt_tokens or 0) if usage else 0,
                output_tokens=(usage.completion_tokens or 0) if usage else 0,
            ),
        )
