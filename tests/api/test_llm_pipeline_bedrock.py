"""/message and /forget on Amazon Bedrock: the service's own client, stubbed."""

import pytest
from botocore.stub import ANY, Stubber

from accounts.models import TenantUsage
from memories.models import Memory
from memories.providers.llm import get_language_model, reset_language_model
from tests.helpers import post_forget, post_message
from tests.memories.test_bedrock import aws_env, converse_answer, tool_answer  # noqa: F401


@pytest.fixture
def bedrock(settings):
    settings.LTM_LLM_PROVIDER = "bedrock"
    settings.LTM_BEDROCK_REGION = "us-east-1"
    settings.LTM_BEDROCK_CHAT_MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
    reset_language_model()
    model = get_language_model()
    with Stubber(model.chat.client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()
    reset_language_model()


def converse_request(tool_name: str | None = None) -> dict:
    expected = {
        "modelId": "anthropic.claude-3-5-haiku-20241022-v1:0",
        "system": ANY,
        "messages": ANY,
        "inferenceConfig": ANY,
    }
    if tool_name:
        expected["toolConfig"] = ANY
    return expected


def test_a_message_on_bedrock_plans_and_replies(bedrock, client_a, tenant_a):
    operations = {
        "operations": [
            {
                "action": "add",
                "memory": "",
                "text": "I live in Lisbon.",
                "happened_on": "",
            }
        ]
    }
    bedrock.add_response(
        "converse",
        tool_answer(operations, name="memory_operations"),
        converse_request("memory_operations"),
    )
    bedrock.add_response(
        "converse",
        converse_answer([{"text": "Lisbon, noted."}]),
        converse_request(),
    )

    response = post_message(client_a, "u1", "I live in Lisbon.")

    body = response.json()
    assert body["reply"] == "Lisbon, noted."
    assert [item["text"] for item in body["added"]] == ["I live in Lisbon."]
    assert [
        (c["purpose"], c["inputTokens"], c["outputTokens"]) for c in body["usage"]
    ] == [
        ("memory", 120, 17),
        ("reply", 120, 17),
    ]
    assert TenantUsage.objects.get(tenant=tenant_a).input_tokens == 240


def test_a_forget_on_bedrock_deletes_what_the_model_chose(bedrock, client_a):
    bedrock.add_response(
        "converse",
        tool_answer(
            {
                "operations": [
                    {"action": "add", "memory": "", "text": t, "happened_on": ""}
                    for t in ("I live in Lisbon.", "I play chess.")
                ]
            },
            name="memory_operations",
        ),
    )
    bedrock.add_response("converse", converse_answer([{"text": "Noted."}]))
    post_message(client_a, "u1", "I live in Lisbon and I play chess.")
    bedrock.add_response(
        "converse", tool_answer({"forget": ["m1"]}, name="memories_to_forget")
    )

    response = post_forget(client_a, "u1", "Forget that I live in Lisbon.")

    body = response.json()
    # The fact the model chose, and the episode that holds the request's words
    # (its message is redacted).
    assert [(m["kind"], m["previousText"]) for m in body["forgotten"]] == [
        ("fact", "I live in Lisbon."),
        ("episode", "I live in Lisbon and I play chess."),
    ]
    assert body["forgottenCount"] == 2
    assert list(Memory.objects.filter(status="active").values_list("kind", "text")) == [
        ("fact", "I play chess.")
    ]
