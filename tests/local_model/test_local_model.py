"""/message and /forget end to end against a real local model: opt-in, cached,
never in CI (`make test-local-model`).

SmolLM2-135M is far too small to be wise, so these tests assert what the
server guarantees, not what the model knows: in a mode where the server
constrains decoding to the schema, every memory and forget answer parses and
passes validation (no fallback to the rules), tokens are counted, and auto
settles on the mode the server takes.
"""

import pytest

from accounts.models import TenantUsage
from memories.models import Memory
from memories.providers.llm import get_language_model, reset_language_model
from tests.helpers import post_forget, post_message
from tests.local_model import model_servers

pytestmark = pytest.mark.local_model

STATEMENTS = [
    "Hi! My name is Dana and I live in Lisbon.",
    "I have a dog called Biscuit.",
    "I moved to Porto this week.",
]

# (server, LTM_OPENAI_STRUCTURED_OUTPUT, the mode it must settle on)
CASES = [
    ("llama-server", "auto", "json_schema"),
    ("llama-server", "json_schema", "json_schema"),
    ("llama-cpp-python", "auto", "json_object"),
    ("llama-cpp-python", "json_object", "json_object"),
]


@pytest.fixture(scope="module", params=["llama-server", "llama-cpp-python"])
def model_server(request, tmp_path_factory):
    if not model_servers.available(request.param):
        pytest.skip(f"{request.param} is not built: run make test-local-model")
    log = tmp_path_factory.mktemp("model") / f"{request.param}.log"
    with model_servers.serve(request.param, log) as base_url:
        yield request.param, base_url


@pytest.fixture
def local_model(model_server, settings):
    server, base_url = model_server
    settings.LTM_LLM_PROVIDER = "openai"
    settings.OPENAI_API_KEY = "local"
    settings.OPENAI_BASE_URL = base_url
    settings.LTM_OPENAI_CHAT_MODEL = "smollm2-135m"
    settings.LTM_LLM_TIMEOUT_SECONDS = 120
    settings.LTM_REQUEST_TIME_BUDGET_SECONDS = 600
    yield server
    reset_language_model()


def _use(settings, mode: str) -> None:
    settings.LTM_OPENAI_STRUCTURED_OUTPUT = mode
    reset_language_model()


def _cases_for(server: str):
    return [(mode, settled) for name, mode, settled in CASES if name == server]


def test_messages_are_planned_by_the_model_in_the_servers_mode(
    local_model, settings, client_a, tenant_a
):
    for mode, settled in _cases_for(local_model):
        _use(settings, mode)
        user_id = f"user-{mode}"
        for statement in STATEMENTS:
            response = post_message(client_a, user_id, statement)
            body = response.json()
            assert response.status_code == 200, body
            purposes = [(call["purpose"], call["outcome"]) for call in body["usage"]]
            # One memory call that parsed and validated, then the reply.
            assert purposes == [("memory", "ok"), ("reply", "ok")], (mode, body)
            assert all(call["inputTokens"] > 0 for call in body["usage"])
            assert all(call["outputTokens"] > 0 for call in body["usage"])
            assert body["reply"].strip()
        assert get_language_model().chat.structured_output == settled
        # What was said is kept, whatever the model planned.
        assert Memory.objects.filter(user_id=user_id, kind="episode").count() == 3
    usage = TenantUsage.objects.get(tenant=tenant_a)
    assert usage.input_tokens > 0
    assert usage.output_tokens > 0


def test_forget_is_chosen_by_the_model_in_the_servers_mode(
    local_model, settings, client_a
):
    for mode, settled in _cases_for(local_model):
        _use(settings, mode)
        user_id = f"user-{mode}"
        post_message(client_a, user_id, "I have a dog called Biscuit.")

        response = post_forget(client_a, user_id, "Forget my dog.")

        body = response.json()
        assert response.status_code == 200, body
        forget_calls = [call for call in body["usage"] if call["purpose"] == "forget"]
        assert [call["outcome"] for call in forget_calls] == ["ok"], (mode, body)
        assert forget_calls[0]["outputTokens"] > 0
        assert get_language_model().chat.structured_output == settled
