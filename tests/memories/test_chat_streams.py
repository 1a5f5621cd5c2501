"""Chat models answering a client's conversation: OpenAI's `stream=True` through
the official client, Bedrock's ConverseStream through boto3 and langchain-aws,
each against a local server speaking the provider's own wire format."""

import pytest

from memories.providers.bedrock import BedrockChatModel
from memories.providers.chat import (
    ChatMessage,
    ChatModelError,
    ChatModelRejected,
    ChatModelUnavailable,
    Sampling,
)
from memories.providers.openai_chat import OpenAIChatModel
from tests.fakes.bedrock_server import USAGE, FakeBedrock
from tests.fakes.openai_server import FakeOpenAI
from tests.memories.test_bedrock import aws_env  # noqa: F401 - fake credentials

CHAT_MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
CONVERSATION = [
    ChatMessage("system", "You are terse."),
    ChatMessage("user", "I moved to Lisbon."),
    ChatMessage("assistant", "Noted."),
    ChatMessage("user", "Where do I live?"),
]


@pytest.fixture
def fake_openai():
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture
def openai_chat(fake_openai) -> OpenAIChatModel:
    return OpenAIChatModel(
        api_key="sk-test-key",
        model="gpt-4o-mini",
        base_url=fake_openai.base_url,
        timeout=5.0,
        max_retries=0,
    )


@pytest.fixture
def fake_bedrock():
    server = FakeBedrock().start()
    yield server
    server.stop()


@pytest.fixture
def bedrock_chat(fake_bedrock) -> BedrockChatModel:
    return BedrockChatModel(
        model_id=CHAT_MODEL,
        region="us-east-1",
        endpoint_url=fake_bedrock.endpoint_url,
        timeout=5,
        max_attempts=1,
    )


def test_openai_streams_the_answer_a_piece_at_a_time_then_its_usage(
    fake_openai, openai_chat
):
    fake_openai.reply_with("You live in Lisbon.", prompt_tokens=30)

    deltas = list(openai_chat.stream(system="", messages=CONVERSATION))

    assert [d.text for d in deltas[:-1]] == ["You ", "live ", "in ", "Lisbon."]
    last = deltas[-1]
    assert (last.text, last.finish_reason) == ("", "stop")
    assert (last.usage.model, last.usage.input_tokens) == ("gpt-4o-mini", 30)
    assert last.usage.output_tokens == 4
    sent = fake_openai.chat_requests()[0].body
    assert sent["stream"] is True
    # Asked for whatever the client wants: the tokens are counted.
    assert sent["stream_options"] == {"include_usage": True}
    # No system prompt of ours when given none; the client's in place.
    assert [m["role"] for m in sent["messages"]] == [
        "system",
        "user",
        "assistant",
        "user",
    ]


def test_openai_gets_only_the_sampling_the_client_chose(fake_openai, openai_chat):
    list(
        openai_chat.stream(
            system="",
            messages=CONVERSATION,
            max_tokens=50,
            sampling=Sampling(temperature=0, stop=("\n",), seed=3),
            model="gpt-4o",
        )
    )
    openai_chat.complete(system="Ours.", messages=CONVERSATION, sampling=Sampling())

    chosen, left_out = (r.body for r in fake_openai.chat_requests())
    assert (chosen["model"], chosen["max_tokens"]) == ("gpt-4o", 50)
    assert (chosen["temperature"], chosen["stop"], chosen["seed"]) == (0, ["\n"], 3)
    assert "top_p" not in chosen
    assert "temperature" not in left_out
    assert left_out["messages"][0] == {"role": "system", "content": "Ours."}


def test_an_openai_error_event_midway_is_a_chat_model_error(fake_openai, openai_chat):
    fake_openai.reply_with("You live in Lisbon.")
    fake_openai.fail_stream_after = 3
    received = []

    with pytest.raises(ChatModelError, match="scripted stream failure"):
        received.extend(openai_chat.stream(system="", messages=CONVERSATION))


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, ChatModelRejected),
        (429, ChatModelUnavailable),
        (503, ChatModelUnavailable),
        (401, ChatModelError),
    ],
)
def test_openai_statuses_say_whose_the_fault_is(fake_openai, openai_chat, status, kind):
    fake_openai.fail_always(status)

    with pytest.raises(ChatModelError) as raised:
        next(openai_chat.stream(system="", messages=CONVERSATION))

    assert type(raised.value) is kind


def test_bedrock_streams_the_answer_then_its_stop_reason_and_usage(
    fake_bedrock, bedrock_chat
):
    fake_bedrock.responder = lambda body: "You live in Lisbon."

    deltas = list(bedrock_chat.stream(system="Ours.", messages=CONVERSATION))

    assert "".join(d.text for d in deltas) == "You live in Lisbon."
    assert deltas[-1].finish_reason == "stop"
    assert deltas[-1].usage.input_tokens == USAGE["inputTokens"]
    assert deltas[-1].usage.output_tokens == USAGE["outputTokens"]
    request = fake_bedrock.requests[0]
    assert (request.operation, request.model_id) == ("converse-stream", CHAT_MODEL)
    # Converse takes the system messages apart: ours, then the client's
    # (langchain-aws joins neighbouring ones).
    assert request.body["system"] == [{"text": "Ours.\nYou are terse."}]
    assert [m["role"] for m in request.body["messages"]] == [
        "user",
        "assistant",
        "user",
    ]
    # Nothing the client did not choose: the model's own defaults apply.
    assert request.body["inferenceConfig"] == {"maxTokens": 1024}


def test_bedrock_takes_temperature_top_p_and_stop_sequences(fake_bedrock, bedrock_chat):
    list(
        bedrock_chat.stream(
            system="",
            messages=CONVERSATION,
            max_tokens=99,
            sampling=Sampling(temperature=0.5, top_p=0.9, stop=("END",), seed=3),
        )
    )

    assert fake_bedrock.requests[0].body["inferenceConfig"] == {
        "maxTokens": 99,
        "temperature": 0.5,
        "topP": 0.9,
        "stopSequences": ["END"],
    }


def test_a_bedrock_exception_midway_is_worth_retrying(fake_bedrock, bedrock_chat):
    fake_bedrock.responder = lambda body: "You live in Lisbon."
    fake_bedrock.fail_stream_after = 3
    received = []

    with pytest.raises(ChatModelUnavailable, match="throttlingException"):
        received.extend(bedrock_chat.stream(system="", messages=CONVERSATION))

    assert "".join(d.text for d in received) == "You live "


def test_a_bedrock_validation_error_is_the_callers_to_fix(fake_bedrock, bedrock_chat):
    fake_bedrock.fail_next("ValidationException", 400)

    with pytest.raises(ChatModelRejected, match="ValidationException"):
        next(bedrock_chat.stream(system="", messages=CONVERSATION))


def test_a_bedrock_answer_names_its_finish_reason(fake_bedrock, bedrock_chat):
    result = bedrock_chat.complete(
        system="", messages=CONVERSATION, sampling=Sampling(), model=CHAT_MODEL
    )

    assert (result.content, result.finish_reason) == ("OK", "stop")
    assert fake_bedrock.requests[0].body["inferenceConfig"] == {"maxTokens": 1024}
