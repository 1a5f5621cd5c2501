"""The time POST /v1/chat/completions adds around the model, through gunicorn.

    python bench/chat_completions.py [--rounds 5] [--database-url postgres://...]

A PostgreSQL database named by --database-url is dropped and made afresh.

Starts gunicorn (one sync worker, as in production) on a fresh data directory
with LTM_LLM_PROVIDER=openai pointed at the test suite's local fake of OpenAI's
HTTP API, which answers at once: a 30-word answer to every conversation, and a
memory call that adds each statement as a fact. The official `openai` client
then sends the 20 messages of a scripted conversation (the last four turns as
history, a system message first), `--rounds` times, each round as a new end
user, without and with `stream=True`.

The overhead of a request is its latency as the client sees it minus the
fake's own time on the model calls it made (the answer, then the memory call
that keeps the turn): recall (an embedding and a hybrid search), storing the
turn, counting tokens, and the extra HTTP hop. Printed: p50 and p95 of the
overhead, the latency, the time to the first piece of text when streaming, and
the same client asking the fake directly, for scale.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from llm import scripted_answer  # noqa: E402 - the memory call's answers
from load import free_port, manage, percentile  # noqa: E402
from s3vectors import CONVERSATION  # noqa: E402 - the same 20 messages

ANSWER = (
    "Here is a thirty word answer, written by a model that takes no time at all, "
    "so that what the benchmark measures is only the service around it, nothing "
    "else."
)
SYSTEM = {"role": "system", "content": "You are a friendly assistant."}


def answer(body: dict) -> str:
    schema = (body.get("response_format") or {}).get("json_schema", {})
    return scripted_answer(body) if schema else ANSWER


def conversation(index: int) -> list[dict]:
    """The system message, the last four turns before message `index`, and it."""
    turns = []
    for said in CONVERSATION[max(0, index - 2) : index]:
        turns += [
            {"role": "user", "content": said},
            {"role": "assistant", "content": ANSWER},
        ]
    return [SYSTEM, *turns, {"role": "user", "content": CONVERSATION[index]}]


def fresh_postgres(url: str) -> None:
    import psycopg
    from psycopg import sql

    server, name = url.rsplit("/", 1)
    with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
        for statement in ("DROP DATABASE IF EXISTS {}", "CREATE DATABASE {}"):
            connection.execute(sql.SQL(statement).format(sql.Identifier(name)))


def start_gunicorn(env: dict) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "ltm_project.wsgi", "--workers", "1",
         "--bind", f"127.0.0.1:{port}", "--timeout", "60"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            urllib.request.urlopen(f"{base}/api/schema/", timeout=5)  # noqa: S310
            return server, base
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.3)
    raise RuntimeError("gunicorn did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()

    import openai

    from tests.fakes.openai_server import FakeOpenAI

    fake = FakeOpenAI().start()
    fake.chat_responder = answer
    data_dir = Path(tempfile.mkdtemp(prefix="ltm-chatbench-"))
    env = {
        **os.environ,
        "LTM_DATA_DIR": str(data_dir),
        "LTM_SECRET_KEY": "chat-bench-only",
        "LTM_ALLOWED_HOSTS": "127.0.0.1",
        "LTM_DEBUG": "false",
        "LTM_SSL_REDIRECT": "false",
        "LTM_RATE_LIMIT": "",
        "LTM_LLM_PROVIDER": "openai",
        "OPENAI_API_KEY": "sk-bench",
        "OPENAI_BASE_URL": fake.base_url,
        "DJANGO_SETTINGS_MODULE": "ltm_project.settings",
    }
    env.pop("DATABASE_URL", None)
    if args.database_url:
        env["DATABASE_URL"] = args.database_url
        if args.database_url.startswith("postgres"):
            fresh_postgres(args.database_url)
    manage(env, "migrate", "--verbosity", "0")
    token = manage(env, "create_tenant", "chat-bench").strip().splitlines()[-1]
    server, base = start_gunicorn(env)
    ltm = openai.OpenAI(base_url=f"{base}/v1", api_key=token, max_retries=0)
    direct = openai.OpenAI(base_url=fake.base_url, api_key="sk-bench", max_retries=0)

    def measure(client, user: str, index: int, stream: bool) -> dict:
        first = len(fake.requests)
        started = time.perf_counter()
        first_text = None
        options = {"model": "gpt-4o-mini", "messages": conversation(index)}
        if client is ltm:
            options["user"] = user
        if stream:
            text = ""
            for chunk in client.chat.completions.create(**options, stream=True):
                if chunk.choices and chunk.choices[0].delta.content:
                    first_text = first_text or time.perf_counter() - started
                    text += chunk.choices[0].delta.content
        else:
            text = client.chat.completions.create(**options).choices[0].message.content
        seconds = time.perf_counter() - started
        assert text == ANSWER, text
        calls = fake.requests[first:]
        model = sum(call.seconds for call in calls)
        return {
            "seconds": seconds,
            "model": model,
            "overhead": seconds - model,
            "first_text": first_text,
            "calls": len(calls),
        }

    try:
        for index in range(len(CONVERSATION)):  # warm up: model, caches, tables
            measure(ltm, "warm-up", index, stream=index % 2 == 0)
        runs = {False: [], True: []}
        direct_runs = {False: [], True: []}
        for round_number in range(args.rounds):
            for stream in (False, True):
                user = f"user-{round_number}-{'stream' if stream else 'whole'}"
                for index in range(len(CONVERSATION)):
                    runs[stream].append(measure(ltm, user, index, stream))
                    direct_runs[stream].append(measure(direct, "", index, stream))
    finally:
        server.terminate()
        server.wait(timeout=60)
        fake.stop()

    def ms(values: list[float], share: float) -> str:
        return f"{percentile(values, share) * 1000:.1f}"

    database = "PostgreSQL" if args.database_url.startswith("postgres") else "SQLite"
    print(
        f"POST /v1/chat/completions through gunicorn (1 sync worker), {database}, "
        f"the official openai client; the fake model answers at once; "
        f"{len(runs[False])} requests each way, {os.cpu_count()} cores"
    )
    for stream, label in ((False, "whole answer"), (True, "stream=True ")):
        results = runs[stream]
        overhead = [r["overhead"] for r in results]
        latency = [r["seconds"] for r in results]
        model = [r["model"] for r in results]
        calls = sorted({r["calls"] for r in results})
        line = (
            f"{label}: overhead p50 {ms(overhead, 0.5)} ms, p95 "
            f"{ms(overhead, 0.95)} ms; latency p50 {ms(latency, 0.5)} ms, p95 "
            f"{ms(latency, 0.95)} ms; the fake's own time p50 {ms(model, 0.5)} ms "
            f"over {'/'.join(map(str, calls))} model calls a request"
        )
        if stream:
            first = [r["first_text"] for r in results]
            line += f"; first text p50 {ms(first, 0.5)} ms, p95 {ms(first, 0.95)} ms"
        print(line)
        plain = [r["seconds"] for r in direct_runs[stream]]
        print(
            f"  the same client straight to the fake: p50 {ms(plain, 0.5)} ms, "
            f"p95 {ms(plain, 0.95)} ms"
        )


if __name__ == "__main__":
    main()
