"""Each structured-output mode against a real local model: calls, invalid
answers and fallbacks to the rules per POST /message, tokens per second.

    make test-local-model            # builds the servers and fetches the model once
    env $(bash scripts/local_model.sh paths) .venv/bin/python bench/local_model.py

Runs the scripted 20-message conversation (the one of bench/llm.py) through POST
/api/v1/message with LTM_LLM_PROVIDER=openai pointed at llama.cpp's llama-server,
and at llama-cpp-python's server when built, both on SmolLM2-135M-Instruct, once
per LTM_OPENAI_STRUCTURED_OUTPUT mode, each as a new user. A memory answer is
invalid when it fails validation (not JSON, not the schema, an id not in the
data); a message falls back to the rules when no memory answer was valid. Then,
per server, tokens per second of one plain 256-token answer.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from llm import configure, percentile  # noqa: E402
from s3vectors import CONVERSATION  # noqa: E402

MODES = ["json_schema", "json_object", "tool", "prompt", "auto"]
SERVERS = ["llama-server", "llama-cpp-python"]


def run_mode(
    client, settings, base_url: str, mode: str, user_id: str, messages: list[str]
) -> dict:
    from memories.providers.llm import get_language_model, reset_language_model

    settings.LTM_OPENAI_STRUCTURED_OUTPUT = mode
    settings.OPENAI_BASE_URL = base_url
    reset_language_model()
    seconds, calls, memory_answers, invalid, fallbacks = [], [], 0, 0, 0
    output_tokens = 0
    for text in messages:
        started = time.perf_counter()
        response = client.post(
            "/api/v1/message", {"userId": user_id, "message": text}, format="json"
        )
        seconds.append(time.perf_counter() - started)
        assert response.status_code == 200, response.content
        usage = response.json()["usage"]
        calls.append(len(usage))
        memory = [call for call in usage if call["purpose"] == "memory"]
        memory_answers += sum(call["outcome"] != "failed" for call in memory)
        invalid += sum(call["outcome"] == "invalid" for call in memory)
        fallbacks += not any(call["outcome"] == "ok" for call in memory)
        output_tokens += sum(call["outputTokens"] for call in usage)
    return {
        "calls": statistics.mean(calls),
        "invalid": invalid / max(memory_answers, 1),
        "fallbacks": fallbacks / len(messages),
        "p50": percentile(seconds, 0.5),
        "p95": percentile(seconds, 0.95),
        "output_tokens": output_tokens / len(messages),
        "settled": get_language_model().chat.structured_output,
    }


def tokens_per_second(base_url: str) -> float:
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="local")
    started = time.perf_counter()
    response = client.chat.completions.create(
        model="smollm2-135m",
        messages=[{"role": "user", "content": "Tell a long story about a cat."}],
        max_tokens=256,
        temperature=0,
    )
    return response.usage.completion_tokens / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", default=MODES)
    parser.add_argument("--servers", nargs="+", default=SERVERS)
    parser.add_argument(
        "--messages",
        type=int,
        default=len(CONVERSATION),
        help="the conversation's first N messages (a mode whose answers run to "
        "the token limit takes minutes a message)",
    )
    args = parser.parse_args()
    configure(tempfile.mkdtemp(prefix="ltm-localmodel-"))

    from django.conf import settings
    from machine import describe
    from rest_framework.test import APIClient

    from accounts.services import tenant_create, token_issue
    from memories.providers.embeddings import get_embedder
    from tests.local_model import model_servers

    settings.LTM_LLM_PROVIDER = "openai"
    settings.OPENAI_API_KEY = "local"
    settings.LTM_OPENAI_CHAT_MODEL = "smollm2-135m"
    settings.LTM_LLM_TIMEOUT_SECONDS = 300
    settings.LTM_REQUEST_TIME_BUDGET_SECONDS = 900
    tenant = tenant_create(slug=f"localmodel-{int(time.time())}")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_issue(tenant=tenant).secret}")
    get_embedder().embed(["warm up"])
    print(
        f"machine: {describe()}; SmolLM2-135M-Instruct Q4_1; the first "
        f"{args.messages} messages of the scripted conversation",
        flush=True,
    )
    print(
        f"{'server':<17} {'mode':<12} {'settled':<12} {'calls/msg':>9} "
        f"{'invalid':>8} {'fallbacks':>9} {'out tok/msg':>11} "
        f"{'/message p50':>12} {'p95':>7}",
        flush=True,
    )
    log_dir = Path(tempfile.mkdtemp(prefix="ltm-localmodel-logs-"))
    for server in args.servers:
        if not model_servers.available(server):
            print(f"{server}: not built (make test-local-model)", flush=True)
            continue
        with model_servers.serve(server, log_dir / f"{server}.log") as base_url:
            speed = tokens_per_second(base_url)
            for mode in args.modes:
                result = run_mode(
                    client,
                    settings,
                    base_url,
                    mode,
                    f"{server}-{mode}",
                    CONVERSATION[: args.messages],
                )
                print(
                    f"{server:<17} {mode:<12} {result['settled']:<12} "
                    f"{result['calls']:>9.2f} {result['invalid']:>8.0%} "
                    f"{result['fallbacks']:>9.0%} {result['output_tokens']:>11.0f} "
                    f"{result['p50']:>10.1f} s {result['p95']:>5.1f} s",
                    flush=True,
                )
            print(f"{server}: {speed:.0f} tokens per second (256-token answer)")


if __name__ == "__main__":
    main()
