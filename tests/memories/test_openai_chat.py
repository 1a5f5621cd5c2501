"""Chat through OpenAI: the real `openai` client against a local fake server."""

import json
import time

import pytest
from django.core.exceptions import ImproperlyConfigured

from memories.providers.chat import ChatMessage, ChatModelError
from memories.providers.openai_chat import OpenAIChatModel
from tests.fakes.openai_server import FakeOpenAI

SCHEMA = {
    "type": "object",
    "properties": {"facts": {"type": "array", "items": {"type": "string"}}},
    "required": ["facts"],
    "additionalProperties": False,
}


@pytest.fixture
def fake_openai():
    server = FakeOpenAI().start()
    yield server
    server.stop()


def chat_model(fake: FakeOpenAI, **overrides) -> OpenAIChatModel:
    options = {
        "api_key": "sk-test-key",
        "model": "gpt-4o-mini",
        "base_url": fake.base_url,
        "timeout": 5.0,
        "max_retries": 2,
    }
    return OpenAIChatModel(**(options | overrides))


def ask(model: OpenAIChatModel, **overrides):
    options = {
        "system": "You extract facts.",
        "messages": [ChatMessage("user", "I live in Lisbon.")],
    }
    return model.complete(**(options | overrides))


def test_it_sends_the_model_the_system_prompt_and_the_messages_in_order(
    fake_openai,
):
    model = chat_model(fake_openai)

    result = model.complete(
        system="You extract facts.",
        messages=[
            ChatMessage("user", "I live in Lisbon."),
            ChatMessage("assistant", "Noted."),
            ChatMessage("user", "And I have a cat."),
        ],
        max_tokens=300,
    )

    assert result.content == "OK"
    (sent,) = fake_openai.chat_requests()
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test-key"
    assert sent.body["model"] == "gpt-4o-mini"
    assert sent.body["messages"] == [
        {"role": "system", "content": "You extract facts."},
        {"role": "user", "content": "I live in Lisbon."},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "And I have a cat."},
    ]
    assert sent.body["max_tokens"] == 300
    assert sent.body["temperature"] == 0.0
    assert "response_format" not in sent.body
    assert model.model_name == "gpt-4o-mini"


def test_a_schema_is_asked_for_as_strict_structured_output(fake_openai):
    fake_openai.reply_with_json({"facts": ["Lives in Lisbon"]})

    result = ask(chat_model(fake_openai), json_schema=SCHEMA, schema_name="facts")

    assert json.loads(result.content) == {"facts": ["Lives in Lisbon"]}
    (sent,) = fake_openai.chat_requests()
    assert sent.body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "facts", "schema": SCHEMA, "strict": True},
    }


def test_the_answer_is_returned_as_is_without_validation(fake_openai):
    fake_openai.reply_with('{"facts": "not a list"')

    result = ask(chat_model(fake_openai), json_schema=SCHEMA)

    assert result.content == '{"facts": "not a list"'


def test_the_usage_the_server_reports_is_returned(fake_openai):
    fake_openai.reply_with("Lisbon.", prompt_tokens=120, completion_tokens=7)

    result = ask(chat_model(fake_openai))

    assert result.usage.model == "gpt-4o-mini"
    assert result.usage.input_tokens == 120
    assert result.usage.output_tokens == 7
    assert result.usage.total_tokens == 127


def test_by_default_the_fake_counts_words_as_tokens(fake_openai):
    fake_openai.reply_with("You live in Lisbon.")

    result = ask(chat_model(fake_openai))

    # "You extract facts." + "I live in Lisbon."
    assert result.usage.input_tokens == 3 + 4
    assert result.usage.output_tokens == 4


def test_a_server_that_omits_usage_counts_zero_tokens(fake_openai):
    fake_openai.omit_usage = True

    result = ask(chat_model(fake_openai))

    assert result.content == "OK"
    assert (result.usage.input_tokens, result.usage.output_tokens) == (0, 0)


def test_a_responder_answers_from_the_request(fake_openai):
    fake_openai.chat_responder = lambda body: body["messages"][-1]["content"].upper()

    result = ask(chat_model(fake_openai))

    assert result.content == "I LIVE IN LISBON."


def test_a_rate_limit_answer_is_retried_once(fake_openai):
    fake_openai.fail_next(429)
    fake_openai.reply_with("Lisbon.")

    result = ask(chat_model(fake_openai))

    assert result.content == "Lisbon."
    assert len(fake_openai.chat_requests()) == 2


def test_a_server_that_keeps_failing_is_a_chat_model_error(fake_openai):
    fake_openai.fail_always(500)

    with pytest.raises(ChatModelError, match="500"):
        ask(chat_model(fake_openai, max_retries=2))

    # One try and the two retries allowed.
    assert len(fake_openai.chat_requests()) == 1 + 2


def test_a_client_error_is_not_retried(fake_openai):
    fake_openai.fail_next(400)

    with pytest.raises(ChatModelError, match="400"):
        ask(chat_model(fake_openai))

    assert len(fake_openai.chat_requests()) == 1


def test_a_server_that_does_not_answer_in_time_is_a_chat_model_error(fake_openai):
    fake_openai.delay_seconds = 1.0
    model = chat_model(fake_openai, timeout=0.2, max_retries=0)

    started = time.monotonic()
    with pytest.raises(ChatModelError, match="timed out"):
        ask(model)

    assert time.monotonic() - started < 0.9


def test_an_unreachable_server_is_a_chat_model_error(fake_openai):
    base_url = fake_openai.base_url
    fake_openai.stop()
    model = chat_model(fake_openai, base_url=base_url, max_retries=0)

    with pytest.raises(ChatModelError, match="reach"):
        ask(model)


def test_a_refusal_is_a_chat_model_error(fake_openai):
    fake_openai.refuse_next("I can't help with that.")

    with pytest.raises(ChatModelError, match="can't help"):
        ask(chat_model(fake_openai), json_schema=SCHEMA)


def test_an_empty_answer_is_a_chat_model_error(fake_openai):
    fake_openai.reply_with("")

    with pytest.raises(ChatModelError, match="empty"):
        ask(chat_model(fake_openai))


def test_an_answer_without_choices_is_a_chat_model_error(fake_openai, monkeypatch):
    real_chat = fake_openai._chat

    def no_choices(body):
        return real_chat(body) | {"choices": []}

    monkeypatch.setattr(fake_openai, "_chat", no_choices)

    with pytest.raises(ChatModelError, match="no choices"):
        ask(chat_model(fake_openai))


def test_a_missing_api_key_is_improperly_configured():
    with pytest.raises(ImproperlyConfigured, match="OPENAI_API_KEY"):
        OpenAIChatModel(api_key="", model="gpt-4o-mini")


def test_chat_answers_do_not_disturb_embeddings(fake_openai):
    import openai

    fake_openai.reply_with("Lisbon.")
    client = openai.OpenAI(api_key="k", base_url=fake_openai.base_url)

    client.embeddings.create(model="m", input=["hello"], dimensions=8)
    result = ask(chat_model(fake_openai))

    assert result.content == "Lisbon."
