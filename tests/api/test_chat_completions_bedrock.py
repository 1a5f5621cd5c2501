"""POST /v1/chat/completions with Bedrock behind LTM: the official `openai` client
in front, boto3 and langchain-aws against a local Converse(Stream) server."""

import json

import openai
import pytest

from accounts.services import token_issue
from memories.models import Memory
from memories.providers.llm import reset_language_model
from memories.providers.llm_chat import CHAT_SYSTEM_PROMPT
from tests.fakes.bedrock_server import USAGE, FakeBedrock
from tests.memories.test_bedrock import aws_env  # noqa: F401 - fake credentials

CHAT_MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
pytestmark = pytest.mark.django_db(transaction=True)


def respond(body: dict):
    """The memory call adds each statement; a conversation gets an answer."""
    if "toolConfig" not in body:
        return "You live in Lisbon."
    data = body["messages"][0]["content"][0]["text"].split("DATA:\n", 1)[1]
    said = json.loads(data)["new_message"]
    if said.endswith("?"):
        return {"operations": []}
    add = {"action": "add", "memory": "", "text": said, "happened_on": ""}
    return {"operations": [add]}


@pytest.fixture
def bedrock(settings):
    fake = FakeBedrock(responder=respond).start()
    settings.LTM_LLM_PROVIDER = "bedrock"
    settings.LTM_BEDROCK_REGION = "us-east-1"
    settings.LTM_BEDROCK_ENDPOINT_URL = fake.endpoint_url
    settings.LTM_BEDROCK_CHAT_MODEL = CHAT_MODEL
    settings.LTM_LLM_MAX_RETRIES = 0
    reset_language_model()
    yield fake
    reset_language_model()
    fake.stop()


@pytest.fixture
def ltm(live_server, tenant_a) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{live_server.url}/v1",
        api_key=token_issue(tenant=tenant_a).secret,
        max_retries=0,
    )


def ask(client, text: str, **options):
    return client.chat.completions.create(
        model="anything",
        user="u1",
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": text},
        ],
        **options,
    )


def test_the_openai_client_streams_bedrocks_answer_with_the_memories_as_data(
    bedrock, ltm
):
    ask(ltm, "I live in Lisbon.")

    chunks = list(
        ask(
            ltm,
            "Where do I live?",
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You live in Lisbon."
    assert chunks[0].model == CHAT_MODEL
    assert chunks[-1].usage.prompt_tokens == USAGE["inputTokens"]
    streamed = bedrock.requests[-2]
    assert streamed.operation == "converse-stream"
    system = streamed.body["system"][0]["text"]
    assert system == f"{CHAT_SYSTEM_PROMPT}\nYou are terse."
    turn = streamed.body["messages"][-1]
    assert turn["role"] == "user"
    assert "I live in Lisbon." in turn["content"][0]["text"]
    assert "I live in Lisbon." not in system
    # The turn was remembered after the answer, by the memory call.
    assert bedrock.requests[-1].operation == "converse"
    assert "toolConfig" in bedrock.requests[-1].body
    assert Memory.objects.filter(kind="fact", text="I live in Lisbon.").exists()


def test_a_throttled_bedrock_is_a_json_503_and_nothing_is_stored(bedrock, ltm):
    bedrock.fail_next("ThrottlingException", 429)

    with pytest.raises(openai.InternalServerError) as raised:
        ask(ltm, "I live in Lisbon.", stream=True)

    assert (raised.value.status_code, raised.value.code) == (503, "model_unavailable")
    assert not Memory.objects.exists()
