"""Bedrock providers: the real boto3 client, answered by botocore's Stubber.

The Stubber answers at botocore's `before-call` event, after the request has been
built and checked against the Bedrock API model but before the endpoint's retry
loop: a stubbed error is raised at once, never retried. Retries are therefore
shown against a small HTTP server on loopback.
"""

import copy
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import numpy as np
import pytest
from botocore.response import StreamingBody
from botocore.retries.bucket import TokenBucket
from botocore.retries.standard import ExponentialBackoff
from botocore.stub import Stubber
from django.core.exceptions import ImproperlyConfigured

from memories.providers.bedrock import (
    BedrockChatModel,
    BedrockEmbedder,
    bedrock_runtime_client,
)
from memories.providers.chat import ChatMessage, ChatModelError, Usage
from memories.providers.embeddings import EmbeddingError

REGION = "us-east-1"
CHAT_MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
EMBEDDING_MODEL = "amazon.titan-embed-text-v2:0"

# Nullable types and a `$defs` key with an underscore: the shapes langchain-aws's
# `bind_tools` would rewrite, and which must reach Bedrock as written.
FACTS_SCHEMA = {
    "type": "object",
    "properties": {
        "facts": {"type": "array", "items": {"$ref": "#/$defs/fact_item"}},
        "note": {"type": ["string", "null"]},
    },
    "required": ["facts", "note"],
    "additionalProperties": False,
    "$defs": {
        "fact_item": {
            "type": "object",
            "properties": {
                "text": {"type": "string"},
                "happened_at": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            },
            "required": ["text", "happened_at"],
            "additionalProperties": False,
        }
    },
}
FACTS = {"facts": [{"text": "Lives in Lisbon", "happened_at": None}], "note": None}


@pytest.fixture(autouse=True)
def aws_env(monkeypatch, tmp_path):
    """Fake credentials, and nothing from this machine's AWS configuration."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTESTING")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-creds"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in (
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
        "AWS_BEARER_TOKEN_BEDROCK",
    ):
        monkeypatch.delenv(name, raising=False)


def record_requests(client) -> list[dict]:
    """The parameters of every call the client makes, as the caller passed them."""
    sent: list[dict] = []
    client.meta.events.register(
        "before-parameter-build.bedrock-runtime",
        lambda params, model, **kwargs: sent.append(
            {"operation": model.name, **copy.deepcopy(params)}
        ),
    )
    return sent


@pytest.fixture
def chat():
    model = BedrockChatModel(
        model_id=CHAT_MODEL, region=REGION, client=bedrock_runtime_client(region=REGION)
    )
    model.sent = record_requests(model.client)
    with Stubber(model.client) as stubber:
        model.stubber = stubber
        yield model
        stubber.assert_no_pending_responses()


@pytest.fixture
def embedder():
    model = BedrockEmbedder(
        region=REGION,
        dimension=256,
        client=bedrock_runtime_client(region=REGION),
    )
    model.sent = record_requests(model.client)
    with Stubber(model.client) as stubber:
        model.stubber = stubber
        yield model
        stubber.assert_no_pending_responses()


def converse_answer(content: list[dict], stop_reason: str = "end_turn") -> dict:
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason,
        "usage": {"inputTokens": 120, "outputTokens": 17, "totalTokens": 137},
        "metrics": {"latencyMs": 250},
    }


def tool_answer(arguments: dict, name: str = "facts") -> dict:
    block = {"toolUse": {"toolUseId": "tooluse_1", "name": name, "input": arguments}}
    return converse_answer([block], stop_reason="tool_use")


CONVERSATION = [
    ChatMessage(role="user", content="I moved to Lisbon."),
    ChatMessage(role="assistant", content="Noted."),
    ChatMessage(role="user", content="What do you know about me?"),
]


def test_a_schema_is_sent_as_a_forced_tool_and_its_input_comes_back_as_json(chat):
    chat.stubber.add_response("converse", tool_answer(FACTS))

    result = chat.complete(
        system="Extract facts.",
        messages=CONVERSATION,
        json_schema=FACTS_SCHEMA,
        schema_name="facts",
        max_tokens=300,
    )

    assert json.loads(result.content) == FACTS
    assert result.usage == Usage(model=CHAT_MODEL, input_tokens=120, output_tokens=17)
    (sent,) = chat.sent
    assert sent == {
        "operation": "Converse",
        "modelId": CHAT_MODEL,
        "system": [{"text": "Extract facts."}],
        "messages": [
            {"role": "user", "content": [{"text": "I moved to Lisbon."}]},
            {"role": "assistant", "content": [{"text": "Noted."}]},
            {"role": "user", "content": [{"text": "What do you know about me?"}]},
        ],
        "inferenceConfig": {"maxTokens": 300, "temperature": 0},
        "toolConfig": {
            "tools": [
                {
                    "toolSpec": {
                        "name": "facts",
                        "description": sent["toolConfig"]["tools"][0]["toolSpec"][
                            "description"
                        ],
                        "inputSchema": {"json": FACTS_SCHEMA},
                    }
                }
            ],
            "toolChoice": {"tool": {"name": "facts"}},
        },
    }


def test_a_plain_answer_returns_the_text_and_its_usage(chat):
    chat.stubber.add_response(
        "converse", converse_answer([{"text": "You moved to Lisbon."}])
    )

    result = chat.complete(system="Be brief.", messages=CONVERSATION[:1])

    assert result.content == "You moved to Lisbon."
    assert result.usage.input_tokens == 120
    assert result.usage.output_tokens == 17
    assert result.usage.total_tokens == 137
    (sent,) = chat.sent
    assert "toolConfig" not in sent
    assert sent["inferenceConfig"] == {"maxTokens": 1024, "temperature": 0}


def test_an_answer_without_the_forced_tool_call_is_an_error(chat):
    chat.stubber.add_response("converse", converse_answer([{"text": "Sure!"}]))

    with pytest.raises(ChatModelError, match="did not call the 'facts' tool"):
        chat.complete(
            system="s",
            messages=CONVERSATION,
            json_schema=FACTS_SCHEMA,
            schema_name="facts",
        )


def test_a_tool_call_cut_off_by_the_token_limit_is_an_error(chat):
    answer = tool_answer({"facts": []})
    answer["stopReason"] = "max_tokens"
    chat.stubber.add_response("converse", answer)

    with pytest.raises(ChatModelError, match="ran out of tokens"):
        chat.complete(
            system="s",
            messages=CONVERSATION,
            json_schema=FACTS_SCHEMA,
            schema_name="facts",
        )


def test_a_validation_error_becomes_a_chat_model_error_naming_the_code(chat):
    chat.stubber.add_client_error(
        "converse",
        service_error_code="ValidationException",
        service_message="The provided model identifier is invalid.",
        http_status_code=400,
    )

    with pytest.raises(ChatModelError, match="ValidationException") as caught:
        chat.complete(system="s", messages=CONVERSATION)

    assert "model identifier is invalid" in str(caught.value)


def test_a_stubbed_throttle_is_not_retried_since_the_stubber_sits_above_retries(
    chat,
):
    chat.stubber.add_client_error(
        "converse", service_error_code="ThrottlingException", http_status_code=429
    )
    chat.stubber.add_response("converse", converse_answer([{"text": "Hello."}]))

    with pytest.raises(ChatModelError, match="ThrottlingException"):
        chat.complete(system="s", messages=CONVERSATION)
    # The queued answer was left for the next call, not taken by a retry.
    assert chat.complete(system="s", messages=CONVERSATION).content == "Hello."


class FakeBedrock(BaseHTTPRequestHandler):
    """Converse on loopback: throttles the first `throttles` requests, then answers."""

    def do_POST(self):
        server = self.server
        self.rfile.read(int(self.headers["Content-Length"]))
        server.paths.append(self.path)
        if len(server.paths) <= server.throttles:
            status = 429
            headers = {"x-amzn-ErrorType": "ThrottlingException"}
            body = {"message": "Too many requests, please wait."}
        else:
            status, headers = 200, {}
            body = converse_answer([{"text": "Hello over HTTP."}])
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_bedrock(monkeypatch):
    # botocore waits up to a second before retrying a throttle, and adaptive mode
    # then holds the client's later requests back for a while; neither here.
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, ctx: 0)
    monkeypatch.setattr(TokenBucket, "acquire", lambda self, *args, **kwargs: True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeBedrock)
    server.paths, server.throttles = [], 1
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_botocore_retries_a_throttled_call(fake_bedrock):
    chat = BedrockChatModel(
        model_id=CHAT_MODEL,
        region=REGION,
        endpoint_url=f"http://127.0.0.1:{fake_bedrock.server_port}",
        timeout=5,
        max_attempts=2,
    )

    result = chat.complete(system="s", messages=CONVERSATION)

    assert result.content == "Hello over HTTP."
    assert fake_bedrock.paths == [f"/model/{quote(CHAT_MODEL)}/converse"] * 2


def test_throttling_past_the_attempt_limit_is_a_chat_model_error(fake_bedrock):
    fake_bedrock.throttles = 2
    chat = BedrockChatModel(
        model_id=CHAT_MODEL,
        region=REGION,
        endpoint_url=f"http://127.0.0.1:{fake_bedrock.server_port}",
        timeout=5,
        max_attempts=2,
    )

    with pytest.raises(ChatModelError, match="ThrottlingException"):
        chat.complete(system="s", messages=CONVERSATION)
    assert len(fake_bedrock.paths) == 2


def invoke_answer(vector: list[float]) -> dict:
    data = json.dumps({"embedding": vector, "inputTextTokenCount": 4}).encode()
    return {
        "body": StreamingBody(io.BytesIO(data), len(data)),
        "contentType": "application/json",
    }


def test_texts_are_embedded_one_invoke_model_call_each(embedder):
    raw = np.random.default_rng(7).normal(size=(2, 256))
    for row in raw:
        embedder.stubber.add_response("invoke_model", invoke_answer(row.tolist()))

    vectors = embedder.embed(["I live in Lisbon.", "I am allergic to peanuts."])

    assert vectors.dtype == np.float32
    assert vectors.shape == (2, 256)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    expected = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors, expected, rtol=1e-5)
    bodies = []
    for sent in embedder.sent:
        assert sent["operation"] == "InvokeModel"
        assert sent["modelId"] == EMBEDDING_MODEL
        assert sent["contentType"] == sent["accept"] == "application/json"
        bodies.append(json.loads(sent["body"]))
    assert bodies == [
        {"inputText": "I live in Lisbon.", "dimensions": 256, "normalize": True},
        {
            "inputText": "I am allergic to peanuts.",
            "dimensions": 256,
            "normalize": True,
        },
    ]


def test_no_texts_make_no_call(embedder):
    assert embedder.embed([]).shape == (0, 256)
    assert embedder.sent == []


def test_a_vector_of_the_wrong_dimension_is_an_embedding_error(embedder):
    embedder.stubber.add_response("invoke_model", invoke_answer([0.1] * 1024))

    with pytest.raises(EmbeddingError, match="dimension 256"):
        embedder.embed(["I live in Lisbon."])


def test_a_failed_embedding_call_is_an_embedding_error_naming_the_code(embedder):
    embedder.stubber.add_client_error(
        "invoke_model",
        service_error_code="AccessDeniedException",
        service_message="You don't have access to the model.",
        http_status_code=403,
    )

    with pytest.raises(EmbeddingError, match="AccessDeniedException"):
        embedder.embed(["I live in Lisbon."])


@pytest.mark.parametrize(
    "build",
    [
        lambda: BedrockChatModel(model_id=CHAT_MODEL, region=""),
        lambda: BedrockEmbedder(region=""),
    ],
    ids=["chat", "embeddings"],
)
def test_a_missing_region_is_improperly_configured(build):
    with pytest.raises(ImproperlyConfigured, match="LTM_BEDROCK_REGION"):
        build()


def test_titan_v2_only_takes_its_three_dimensions():
    with pytest.raises(ImproperlyConfigured, match="256, 512, 1024"):
        BedrockEmbedder(region=REGION, dimension=384)


def test_a_model_arn_without_a_provider_is_improperly_configured():
    arn = "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abc123"
    with pytest.raises(ImproperlyConfigured, match="provider"):
        BedrockChatModel(model_id=arn, region=REGION)
