"""Structured output negotiated per server: each way of asking for JSON, and the
move to the next way when a server refuses one (LTM_OPENAI_STRUCTURED_OUTPUT),
through /message and /forget against the fake server behaving as real ones do."""

import json
import logging

import pytest
from django.core.exceptions import ImproperlyConfigured

from memories.models import Memory
from memories.providers.llm import get_language_model, reset_language_model
from tests.api.test_llm_pipeline import ScriptedModel, add, alias_of
from tests.fakes.openai_server import FakeOpenAI, requested_schema, structured_mode
from tests.helpers import post_forget, post_message

# What llama-cpp-python's server answers to response_format json_schema.
LLAMA_CPP_PYTHON_REFUSAL = {
    "detail": [
        {
            "type": "literal_error",
            "loc": ["body", "response_format", "type"],
            "msg": "Input should be 'text' or 'json_object'",
            "input": "json_schema",
        }
    ]
}
# What a server without JSON modes says (as LM Studio does of json_object).
NO_RESPONSE_FORMAT = {
    "error": {"message": "'response_format.type' must be 'text'", "type": "invalid"}
}
NO_TOOLS = {"error": {"message": "tools are not supported", "type": "invalid"}}


@pytest.fixture
def serve(settings):
    fakes = []

    def start(structured_output: str) -> ScriptedModel:
        fake = FakeOpenAI().start()
        fakes.append(fake)
        settings.LTM_LLM_PROVIDER = "openai"
        settings.OPENAI_API_KEY = "sk-test-key"
        settings.OPENAI_BASE_URL = fake.base_url
        settings.LTM_OPENAI_CHAT_MODEL = "local-model"
        settings.LTM_LLM_MAX_RETRIES = 0
        settings.LTM_LLM_TIMEOUT_SECONDS = 5
        settings.LTM_OPENAI_STRUCTURED_OUTPUT = structured_output
        reset_language_model()
        return ScriptedModel(fake)

    yield start
    reset_language_model()
    for fake in fakes:
        fake.stop()


def active_texts(user_id="u1") -> list[str]:
    return sorted(
        Memory.objects.filter(
            user_id=user_id, status="active", kind="fact"
        ).values_list("text", flat=True)
    )


@pytest.mark.parametrize("mode", ["json_schema", "json_object", "tool", "prompt"])
def test_each_mode_stores_what_the_model_planned_and_counts_its_tokens(
    serve, client_a, mode
):
    model = serve(mode)
    model.memory.append(add("My sister is called Ana."))

    response = post_message(client_a, "u1", "My sister Ana visited me today.")

    body = response.json()
    assert response.status_code == 200, body
    # The model's fact, not the rules' ("My sister Ana visited me today.").
    assert active_texts() == ["My sister is called Ana."]
    memory_call = body["usage"][0]
    assert (memory_call["purpose"], memory_call["outcome"]) == ("memory", "ok")
    assert memory_call["inputTokens"] > 0
    assert memory_call["outputTokens"] > 0
    sent = model.fake.chat_requests()[0].body
    assert structured_mode(sent) == mode
    if mode != "json_schema":
        # The schema is in the prompt for every mode that does not enforce it.
        assert '"operations"' in sent["messages"][0]["content"]
    if mode == "tool":
        assert sent["tool_choice"] == "required"
        assert sent["tools"][0]["function"]["name"] == "memory_operations"


def test_auto_moves_a_server_that_refuses_json_schema_to_json_object_once(
    serve, client_a, caplog
):
    model = serve("auto")
    # As llama-cpp-python's server: HTTP 500 for json_schema, json_object taken.
    model.fake.refuse_mode("json_schema", 500, LLAMA_CPP_PYTHON_REFUSAL)
    model.memory.extend([add("I live in Porto."), add("I have a dog named Rex.")])

    with caplog.at_level(logging.WARNING, logger="memories.providers.openai_chat"):
        first = post_message(client_a, "u1", "I moved to Porto.")
        second = post_message(client_a, "u1", "We adopted a dog, Rex.")

    assert [call["outcome"] for call in first.json()["usage"]] == ["ok", "ok"]
    assert [call["outcome"] for call in second.json()["usage"]] == ["ok", "ok"]
    assert active_texts() == ["I have a dog named Rex.", "I live in Porto."]
    modes = [structured_mode(r.body) for r in model.fake.chat_requests()]
    # Refused once, then json_object from then on (replies ask for no JSON).
    assert modes == ["json_schema", "json_object", None, "json_object", None]
    changes = [r for r in caplog.records if "refused structured output" in r.message]
    assert len(changes) == 1
    assert "json_schema" in changes[0].message
    assert "json_object" in changes[0].message
    assert get_language_model().chat.structured_output == "json_object"


def test_auto_walks_down_to_the_mode_a_server_takes(serve, client_a):
    model = serve("auto")
    model.fake.refuse_mode("json_schema", 400, NO_RESPONSE_FORMAT)
    model.fake.refuse_mode("json_object", 400, NO_RESPONSE_FORMAT)
    model.fake.refuse_mode("tool", 400, NO_TOOLS)
    model.memory.append(add("I play the cello."))

    response = post_message(client_a, "u1", "I started playing the cello.")

    assert [call["outcome"] for call in response.json()["usage"]] == ["ok", "ok"]
    assert active_texts() == ["I play the cello."]
    modes = [structured_mode(r.body) for r in model.fake.chat_requests()]
    assert modes == ["json_schema", "json_object", "tool", "prompt", None]


def test_the_schema_allows_only_the_ids_in_the_data_and_bounds_the_answer(
    serve, client_a
):
    model = serve("auto")
    model.memory.append(add("I live in Porto."))
    post_message(client_a, "u1", "I live in Porto.")

    post_message(client_a, "u1", "I live in Porto, near the river.")

    schema = requested_schema(model.fake.chat_requests()[-2].body)
    operations = schema["properties"]["operations"]
    assert operations["maxItems"] == 20
    new_facts, known = operations["items"]["anyOf"]
    assert new_facts["properties"]["memory"]["enum"] == [""]
    assert known["properties"]["action"]["enum"] == ["update", "delete"]
    assert known["properties"]["memory"]["enum"] == ["m1"]
    assert known["properties"]["text"]["maxLength"] == 300
    assert new_facts["properties"]["happened_on"]["pattern"]


def test_a_server_refusing_a_schema_bound_keeps_its_mode_without_bounds(
    serve, client_a, caplog
):
    model = serve("auto")
    # As OpenAI's strict mode: "'maxLength' is not permitted."
    model.fake.refuse_schema_keyword("maxLength")
    model.memory.extend([add("I live in Porto."), add("I have a cat.")])

    with caplog.at_level(logging.WARNING, logger="memories.providers.openai_chat"):
        first = post_message(client_a, "u1", "I moved to Porto.")
        second = post_message(client_a, "u1", "I adopted a cat.")

    assert first.json()["usage"][0]["outcome"] == "ok"
    assert second.json()["usage"][0]["outcome"] == "ok"
    assert active_texts() == ["I have a cat.", "I live in Porto."]
    memory_calls = [
        r.body for r in model.fake.chat_requests() if structured_mode(r.body)
    ]
    assert [structured_mode(body) for body in memory_calls] == ["json_schema"] * 3
    sent = [json.dumps(requested_schema(body)) for body in memory_calls]
    assert ['"maxLength"' in schema for schema in sent] == [True, False, False]
    assert memory_calls[-1]["response_format"]["json_schema"]["strict"] is True
    assert len([r for r in caplog.records if "refused a bound" in r.message]) == 1


def test_forget_is_negotiated_the_same_way(serve, client_a):
    model = serve("auto")
    model.fake.refuse_mode("json_schema", 500, LLAMA_CPP_PYTHON_REFUSAL)
    model.memory.append(add("I work at the bakery.", "I live in Braga."))
    post_message(client_a, "u1", "I work at the bakery and live in Braga.")
    model.forget.append(
        lambda data: {"forget": [alias_of(data, "bakery", "candidate_memories")]}
    )

    response = post_forget(client_a, "u1", "Forget where I work.")

    assert response.status_code == 200, response.content
    assert active_texts() == ["I live in Braga."]
    forget_request = model.fake.chat_requests()[-1].body
    assert structured_mode(forget_request) == "json_object"


def test_a_mode_set_by_hand_is_never_changed(serve, client_a):
    model = serve("json_schema")
    model.fake.refuse_mode("json_schema", 500, LLAMA_CPP_PYTHON_REFUSAL)

    response = post_message(client_a, "u1", "I live in Lisbon.")

    # The call fails and the rules remember the message: nothing is lost.
    assert response.json()["usage"][0]["outcome"] == "failed"
    assert active_texts() == ["I live in Lisbon."]
    assert [structured_mode(r.body) for r in model.fake.chat_requests()] == [
        "json_schema",
        None,
    ]
    assert get_language_model().chat.structured_output == "json_schema"


def test_a_refusal_that_is_not_about_the_mode_moves_nothing(serve, client_a):
    model = serve("auto")
    too_long = {"error": {"message": "This model's maximum context length is 2048"}}
    model.fake.refuse_mode("json_schema", 400, too_long)

    response = post_message(client_a, "u1", "I live in Lisbon.")

    assert response.json()["usage"][0]["outcome"] == "failed"
    assert active_texts() == ["I live in Lisbon."]
    assert get_language_model().chat.structured_output == "json_schema"


@pytest.mark.parametrize(
    "answer",
    [
        'Sure! Here it is:\n```json\n{"operations": [{"action": "add", "memory": "", '
        '"text": "I live in Faro.", "happened_on": ""}]}\n```\nAnything else?',
        '{"operations": [{"action": "add", "memory": "", "text": "I live in Faro.", '
        '"happened_on": ""}]} I hope this helps {not json}',
    ],
    ids=["fenced", "trailing-text"],
)
def test_prompt_mode_takes_the_first_json_object_of_the_answer(serve, client_a, answer):
    model = serve("prompt")
    model.memory.append(lambda data: answer)

    response = post_message(client_a, "u1", "I moved to Faro.")

    assert response.json()["usage"][0]["outcome"] == "ok"
    assert active_texts() == ["I live in Faro."]


@pytest.mark.parametrize("mode", ["json_object", "tool", "prompt"])
def test_every_mode_still_validates_and_falls_back_to_the_rules(serve, client_a, mode):
    model = serve(mode)
    invented = {
        "operations": [
            {"action": "update", "memory": "m7", "text": "x", "happened_on": ""}
        ]
    }
    model.memory.extend([lambda data: invented, lambda data: "no JSON at all"])

    response = post_message(client_a, "u1", "I live in Lisbon.")

    outcomes = [call["outcome"] for call in response.json()["usage"]]
    assert outcomes == ["invalid", "invalid", "ok"]
    assert active_texts() == ["I live in Lisbon."]  # by the rules


def test_an_unknown_mode_is_refused_at_start(settings):
    settings.LTM_LLM_PROVIDER = "openai"
    settings.OPENAI_API_KEY = "sk-test-key"
    settings.LTM_OPENAI_STRUCTURED_OUTPUT = "grammar"
    reset_language_model()
    try:
        with pytest.raises(ImproperlyConfigured, match="LTM_OPENAI_STRUCTURED_OUTPUT"):
            get_language_model()
    finally:
        reset_language_model()
