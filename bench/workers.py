"""Background work, measured with real processes: gunicorn, Celery workers on
Redis, a fake OpenAI-compatible model that takes a fixed time per call.

    python bench/workers.py [--model-seconds 0.4] [--broker redis://127.0.0.1:6379/14]

Prints:
- POST /message p50 and p95 in LTM_MEMORY_MODE=sync and async (the fake model's
  memory call and reply each take --model-seconds; async answers after the reply
  only, a worker making the memory call);
- messages remembered per second by 1, 2 and 4 worker processes (async; a backlog
  of messages of many users, sent with no worker running, then timed until done);
- the outbox's lag from commit to vector written, p50 and p95 (the relay task);
- what /metrics costs a request: POST /api/v1/memories/search p50 with
  LTM_METRICS_ENABLED=false and true.

Each part runs on a fresh SQLite database in its own data directory.
"""

import argparse
import json
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import machine  # noqa: E402 - bench/machine.py
from llm import percentile, scripted_answer  # noqa: E402 - bench/llm.py
from s3vectors import CONVERSATION  # noqa: E402 - the same 20 messages

from tests.fakes.openai_server import FakeOpenAI  # noqa: E402
from tests.servers import create_tenant, gunicorn, service_env  # noqa: E402

STATEMENTS = [text for text in CONVERSATION if not text.rstrip().endswith("?")]


def call(base: str, path: str, token: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{base}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
        return json.loads(response.read())


@contextmanager
def worker(env: dict, concurrency: int, log: Path):
    with open(log, "ab") as output:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "ltm_project", "worker",
                "--pool", "solo" if concurrency == 1 else "prefork",
                "--concurrency", str(concurrency),
                "--without-gossip", "--without-mingle", "--loglevel", "WARNING",
            ],
            cwd=ROOT, env=env, stdout=output, stderr=output,
        )  # fmt: skip
        try:
            yield
        finally:
            process.terminate()
            process.wait(timeout=60)


def database(data_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(data_dir / "ltm.sqlite3", timeout=30)


def not_done(data_dir: Path) -> int:
    with database(data_dir) as connection:
        (pending,) = connection.execute(
            "SELECT count(*) FROM memories_message WHERE memory_update != 'done'"
        ).fetchone()
        (outbox,) = connection.execute(
            "SELECT count(*) FROM memories_vectoroperation WHERE applied_at IS NULL"
        ).fetchone()
    return pending + outbox


def wait_until_done(data_dir: Path, limit: float = 600) -> float:
    started = time.monotonic()
    while not_done(data_dir):
        if time.monotonic() - started > limit:
            raise SystemExit("background work did not finish")
        time.sleep(0.05)
    return time.monotonic() - started


@contextmanager
def service(root: Path, name: str, fake: FakeOpenAI | None, args, **extra):
    data_dir = root / name
    data_dir.mkdir()
    settings = {
        "LTM_BROKER_URL": args.broker,
        "LTM_TASK_QUEUE": f"ltm-bench-{secrets.token_hex(4)}",
        "LTM_RATE_LIMIT": "",
        **extra,
    }
    if fake is not None:
        settings |= {
            "LTM_LLM_PROVIDER": "openai",
            "OPENAI_API_KEY": "sk-bench",
            "OPENAI_BASE_URL": fake.base_url,
        }
    env = service_env(data_dir, f"sqlite:///{data_dir / 'ltm.sqlite3'}", **settings)
    token = create_tenant(env)
    with gunicorn(env, workers=2, log_path=data_dir / "gunicorn.log") as base:
        yield env, base, token, data_dir


def conversation_latency(base: str, token: str, users: int) -> list[float]:
    seconds = []
    for user in range(users):
        for text in CONVERSATION:
            started = time.perf_counter()
            call(
                base, "/api/v1/message", token, {"userId": f"u{user}", "message": text}
            )
            seconds.append(time.perf_counter() - started)
    return seconds


def outbox_lag(data_dir: Path) -> list[float]:
    with database(data_dir) as connection:
        rows = connection.execute(
            "SELECT (julianday(applied_at) - julianday(created_at)) * 86400 "
            "FROM memories_vectoroperation WHERE applied_at IS NOT NULL"
        ).fetchall()
    return [row[0] for row in rows]


def milliseconds(values: list[float]) -> str:
    return (
        f"p50 {percentile(values, 0.5) * 1000:.0f} ms, "
        f"p95 {percentile(values, 0.95) * 1000:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-seconds", type=float, default=0.4)
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--users", type=int, default=2)
    parser.add_argument("--backlog-users", type=int, default=30)
    parser.add_argument("--searches", type=int, default=300)
    parser.add_argument(
        "--parts", default="latency,throughput,metrics", help="which to measure"
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ltm-workers-"))
    print(f"machine: {machine.describe()}; SQLite; broker {args.broker}", flush=True)
    fake = FakeOpenAI().start()
    fake.chat_responder = scripted_answer
    fake.delay_seconds = args.model_seconds

    parts = set(args.parts.split(","))
    lags: list[float] = []
    for mode in ("sync", "async") if "latency" in parts else ():
        with service(root, mode, fake, args, LTM_MEMORY_MODE=mode) as (
            env, base, token, data_dir
        ):  # fmt: skip
            call(base, "/api/v1/message", token, {"userId": "warm", "message": "Hi."})
            with worker(env, 2, data_dir / "worker.log"):
                seconds = conversation_latency(base, token, args.users)
                wait_until_done(data_dir)
            lags.extend(outbox_lag(data_dir))
        print(
            f"POST /message, LTM_MEMORY_MODE={mode}, model {args.model_seconds} s a "
            f"call, {len(seconds)} messages: {milliseconds(seconds)}",
            flush=True,
        )
    if lags:
        print(
            f"outbox lag, commit to vector written by the relay task "
            f"({len(lags)} entries, both modes): {milliseconds(lags)}",
            flush=True,
        )

    for concurrency in (1, 2, 4) if "throughput" in parts else ():
        name = f"backlog-{concurrency}"
        with service(root, name, fake, args, LTM_MEMORY_MODE="async") as (
            env, base, token, data_dir
        ):  # fmt: skip
            sent = 0
            for index, text in enumerate(STATEMENTS[:3] * args.backlog_users):
                user = f"u{index % args.backlog_users}"
                call(base, "/api/v1/message", token, {"userId": user, "message": text})
                sent += 1
            with worker(env, concurrency, data_dir / "worker.log"):
                took = wait_until_done(data_dir)
        print(
            f"{concurrency} worker process(es): {sent} messages remembered in "
            f"{took:.1f} s, {sent / took:.1f} messages/s",
            flush=True,
        )
    fake.stop()

    for enabled in ("false", "true") if "metrics" in parts else ():
        measured = service(
            root, f"metrics-{enabled}", None, args, LTM_METRICS_ENABLED=enabled
        )
        with measured as (env, base, token, data_dir):
            for text in STATEMENTS:
                call(base, "/api/v1/message", token, {"userId": "u1", "message": text})
            seconds = []
            for index in range(args.searches):
                started = time.perf_counter()
                call(
                    base,
                    "/api/v1/memories/search",
                    token,
                    {"userId": "u1", "query": CONVERSATION[index % len(CONVERSATION)]},
                )
                seconds.append(time.perf_counter() - started)
            if enabled == "true":
                started = time.perf_counter()
                urllib.request.urlopen(f"{base}/metrics", timeout=30).read()  # noqa: S310
                scrape = time.perf_counter() - started
        print(
            f"POST /api/v1/memories/search with LTM_METRICS_ENABLED={enabled}: "
            f"{milliseconds(seconds)} (mean {statistics.mean(seconds) * 1000:.1f} ms)",
            flush=True,
        )
    if "metrics" in parts:
        print(f"one /metrics scrape: {scrape * 1000:.0f} ms", flush=True)


if __name__ == "__main__":
    main()
