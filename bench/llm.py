"""Language-model calls, tokens and our own latency per POST /message.

    python bench/llm.py [--rounds 10]

Runs a fixed scripted conversation of 20 messages through POST /api/v1/message
with LTM_LLM_PROVIDER=openai pointed at the test suite's local fake of OpenAI's
HTTP API, which answers at once: the memory call adds each statement as a fact
(updating the related memory when the statement names a slot it holds) and does
nothing for questions; the reply call answers "OK". Prints the calls and tokens
per message (tokens as the fake counts them: words), then the latency of POST
/message with the model (our code around two model calls, the model taking no
time) against the offline rules, p50 and p95 over every message of every round.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from s3vectors import CONVERSATION  # noqa: E402 - the same 20 messages


def configure(data_dir: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ltm_project.settings")
    os.environ["LTM_SECRET_KEY"] = "bench-only-secret"  # noqa: S105
    os.environ["LTM_DATA_DIR"] = data_dir
    Path(data_dir, "static").mkdir(exist_ok=True)
    os.environ["LTM_RATE_LIMIT"] = ""
    os.environ["LTM_ALLOWED_HOSTS"] = "testserver"
    # The in-process client speaks plain HTTP; no TLS proxy redirects it.
    os.environ["LTM_SSL_REDIRECT"] = "false"
    os.environ.pop("DATABASE_URL", None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def scripted_answer(body: dict) -> str:
    """What the fake model says: add statements, update a held slot, else nothing."""
    schema = (body.get("response_format") or {}).get("json_schema", {})
    if schema.get("name") != "memory_operations":
        return "OK"
    user = next(m for m in body["messages"] if m["role"] == "user")
    data = json.loads(user["content"].split("DATA:\n", 1)[1])
    message = data["new_message"]
    if message.rstrip().endswith("?") or len(message.split()) < 4:
        return json.dumps({"operations": []})
    operation = {"action": "add", "memory": "", "text": message, "happened_on": ""}
    for memory in data["related_memories"]:
        shared = {"live", "favourite"} & set(memory["text"].lower().split())
        if shared and shared & set(message.lower().replace(".", "").split()):
            operation = {**operation, "action": "update", "memory": memory["id"]}
            break
    return json.dumps({"operations": [operation]})


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    configure(tempfile.mkdtemp(prefix="ltm-llmbench-"))

    from django.conf import settings
    from rest_framework.test import APIClient

    from accounts.services import tenant_create, token_issue
    from memories.providers.embeddings import get_embedder
    from memories.providers.llm import reset_language_model
    from tests.fakes.openai_server import FakeOpenAI

    fake = FakeOpenAI().start()
    fake.chat_responder = scripted_answer
    tenant = tenant_create(slug=f"llmbench-{int(time.time())}")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_issue(tenant=tenant).secret}")
    get_embedder().embed(["warm up"])

    def run(provider: str, user_id: str) -> tuple[list[float], list[list[dict]]]:
        settings.LTM_LLM_PROVIDER = provider
        settings.OPENAI_API_KEY = "sk-bench"
        settings.OPENAI_BASE_URL = fake.base_url
        reset_language_model()
        seconds, usage = [], []
        for text in CONVERSATION:
            started = time.perf_counter()
            response = client.post(
                "/api/v1/message", {"userId": user_id, "message": text}, format="json"
            )
            seconds.append(time.perf_counter() - started)
            assert response.status_code == 200, response.content
            usage.append(response.json()["usage"])
        return seconds, usage

    run("openai", "warm-up")
    run("offline", "warm-up-offline")
    with_model, offline = [], []
    usage_first_round = None
    for round_number in range(args.rounds):
        seconds, usage = run("openai", f"user-{round_number}")
        with_model.extend(seconds)
        usage_first_round = usage_first_round or usage
        offline.extend(run("offline", f"offline-{round_number}")[0])
    fake.stop()

    calls = [len(message_usage) for message_usage in usage_first_round]
    tokens_in = [sum(c["inputTokens"] for c in u) for u in usage_first_round]
    tokens_out = [sum(c["outputTokens"] for c in u) for u in usage_first_round]
    by_purpose: dict[str, list[int]] = {}
    for message_usage in usage_first_round:
        for call in message_usage:
            by_purpose.setdefault(call["purpose"], []).append(
                call["inputTokens"] + call["outputTokens"]
            )
    print(f"scripted conversation: {len(CONVERSATION)} messages, openai provider, fake")
    print(
        f"language-model calls per message: {statistics.mean(calls):.2f} "
        f"(min {min(calls)}, max {max(calls)}), {sum(calls)} in all"
    )
    print(
        f"tokens per message (words, as the fake counts): input mean "
        f"{statistics.mean(tokens_in):.0f} (max {max(tokens_in)}), output mean "
        f"{statistics.mean(tokens_out):.0f}"
    )
    for purpose, totals in by_purpose.items():
        mean = statistics.mean(totals)
        print(f"  {purpose} call: {len(totals)} calls, mean {mean:.0f} tokens")
    print(
        f"POST /message latency over {len(with_model)} requests: with the model "
        f"(answering at once) p50 {percentile(with_model, 0.5) * 1000:.1f} ms, "
        f"p95 {percentile(with_model, 0.95) * 1000:.1f} ms; offline rules p50 "
        f"{percentile(offline, 0.5) * 1000:.1f} ms, p95 "
        f"{percentile(offline, 0.95) * 1000:.1f} ms"
    )
    added_p50 = percentile(with_model, 0.5) - percentile(offline, 0.5)
    added_p95 = percentile(with_model, 0.95) - percentile(offline, 0.95)
    print(
        "added by our code around the model calls: "
        f"p50 {added_p50 * 1000:.1f} ms, p95 {added_p95 * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
