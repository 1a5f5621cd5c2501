"""A mixed load against gunicorn workers: does anything fail, duplicate or drift?

    python bench/load.py [--workers 3] [--clients 8] [--seconds 60]
                         [--database-url postgres://...] [--cache-url redis://...]

Starts gunicorn (`--workers` processes) on a fresh data directory, on the
database and cache given (default: PostgreSQL and Redis on 127.0.0.1, as on CI
machines; `--database-url ""` for SQLite), and runs `--clients` threads for
`--seconds`: statements, questions, the same statement sent by several clients
at once, forgets, deletes by id and the same import sent concurrently. Prints
throughput, /message latency (p50, p95, p99), every status seen (5xx counted
apart), duplicates found (two active copies of one statement of one user), and
the exit code of `reconcile_vectors` afterwards.
"""

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLACES = ["Lisbon", "Porto", "Berlin", "Kyoto", "Oslo", "Lima", "Hanoi", "Perth"]
THINGS = ["bikes", "cats", "plants", "guitars", "books", "lamps"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def manage(env: dict, *args: str) -> str:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout


class Client:
    def __init__(self, base: str, token: str):
        self.base, self.token = base, token
        self.statuses: Counter = Counter()
        self.message_seconds: list[float] = []
        self.lock = threading.Lock()

    def call(
        self, method: str, path: str, body: dict | None = None
    ) -> tuple[int, dict]:
        request = urllib.request.Request(
            f"{self.base}{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
            },
        )
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        elapsed = time.perf_counter() - started
        with self.lock:
            self.statuses[status] += 1
            if path.endswith("/message"):
                self.message_seconds.append(elapsed)
        try:
            return status, json.loads(raw) if raw else {}
        except ValueError:
            with self.lock:
                self.statuses["not JSON"] += 1
            return status, {}


def traffic(
    client: Client, rng: random.Random, deadline: float, race: threading.Barrier
):
    user = f"user-{rng.randrange(12)}"
    while time.monotonic() < deadline:
        kind = rng.random()
        if kind < 0.45:
            client.call(
                "POST",
                "/api/v1/message",
                {
                    "userId": user,
                    "message": f"I own {rng.randrange(2, 9)} {rng.choice(THINGS)} "
                    f"and I live in {rng.choice(PLACES)}.",
                },
            )
        elif kind < 0.7:
            client.call(
                "POST",
                "/api/v1/message",
                {
                    "userId": user,
                    "message": f"Where do I live? Any {rng.choice(THINGS)}?",
                },
            )
        elif kind < 0.8:
            # Every client sends the same statement for one user at once.
            try:
                race.wait(timeout=10)
            except threading.BrokenBarrierError:
                continue
            client.call(
                "POST",
                "/api/v1/message",
                {"userId": "racer", "message": "I keep bees on the roof."},
            )
        elif kind < 0.87:
            client.call(
                "POST",
                "/api/v1/forget",
                {"userId": user, "message": f"Forget that I own {rng.choice(THINGS)}."},
            )
        elif kind < 0.93:
            status, page = client.call("GET", f"/api/v1/memories?userId={user}")
            if status == 200 and page["results"]:
                memory = rng.choice(page["results"])
                client.call("DELETE", f"/api/v1/memories/{memory['id']}")
        else:
            batch = rng.randrange(3)
            client.call(
                "POST",
                "/api/v1/memories/import",
                {
                    "userId": "importer",
                    "messages": [
                        {
                            "text": f"On day {batch}-{index} I walked to the {place}.",
                            "sentAt": f"2025-01-0{1 + index}T09:00:00Z",
                            "clientMessageId": f"batch-{batch}-{index}",
                        }
                        for index, place in enumerate(PLACES[:4])
                    ],
                },
            )


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def main() -> None:  # noqa: PLR0915 - a linear report
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/ltm_load"
    )
    parser.add_argument("--cache-url", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="ltm-load-"))
    env = {
        **os.environ,
        "LTM_DATA_DIR": str(data_dir),
        "LTM_SECRET_KEY": "load-bench-only",
        "LTM_ALLOWED_HOSTS": "127.0.0.1",
        "LTM_DEBUG": "false",
        "LTM_SSL_REDIRECT": "false",
        "LTM_RATE_LIMIT": "",
        "LTM_CACHE_URL": args.cache_url,
        "DJANGO_SETTINGS_MODULE": "ltm_project.settings",
    }
    env.pop("DATABASE_URL", None)
    if args.database_url:
        env["DATABASE_URL"] = args.database_url
        if args.database_url.startswith("postgres"):
            name = args.database_url.rsplit("/", 1)[1]
            admin = args.database_url.rsplit("/", 1)[0] + "/postgres"
            subprocess.run(
                ["psql", admin, "-qc", f"DROP DATABASE IF EXISTS {name}"], check=True
            )
            subprocess.run(
                ["psql", admin, "-qc", f"CREATE DATABASE {name}"], check=True
            )
    manage(env, "migrate", "--verbosity", "0")
    token = manage(env, "create_tenant", "load").strip().splitlines()[-1]
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "ltm_project.wsgi", "--workers",
         str(args.workers), "--bind", f"127.0.0.1:{port}", "--timeout", "60"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"{base}/api/schema/", timeout=5)  # noqa: S310
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.3)
        client = Client(base, token)
        deadline = time.monotonic() + args.seconds
        race = threading.Barrier(args.clients)
        threads = [
            threading.Thread(
                target=traffic, args=(client, random.Random(seed), deadline, race)
            )
            for seed in range(args.clients)
        ]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            race_abort = time.monotonic() > deadline
            thread.join(max(0.0, deadline - time.monotonic()) + 120)
            if race_abort:
                race.abort()
        race.abort()
        elapsed = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=60)

    sync = subprocess.run(
        [sys.executable, "manage.py", "sync_vectors"], cwd=ROOT, env=env,
        capture_output=True, text=True,
    )  # fmt: skip
    reconcile = subprocess.run(
        [sys.executable, "manage.py", "reconcile_vectors", "--no-progress"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    duplicates = manage(
        env, "shell", "--verbosity", "0", "-c",
        "from django.db.models import Count;"
        "from memories.models import Memory;"
        "print(Memory.objects.filter(status='active').values('tenant','user_id',"
        "'kind','content_hash').annotate(n=Count('id')).filter(n__gt=1).count())",
    ).strip().splitlines()[-1]  # fmt: skip
    total = sum(
        count for status, count in client.statuses.items() if status != "not JSON"
    )
    server_errors = sum(
        count for status, count in client.statuses.items()
        if isinstance(status, int) and status >= 500
    )  # fmt: skip
    seconds = client.message_seconds
    print("Mixed load through gunicorn (embedded model, no language model)")
    print(
        f"machine: {os.cpu_count()} cores; workers: {args.workers}; clients: "
        f"{args.clients}; database: {args.database_url or 'sqlite'}; cache: "
        f"{args.cache_url}"
    )
    print(f"requests: {total} in {elapsed:.1f} s = {total / elapsed:.1f}/s")
    print(
        f"/message: {len(seconds)} requests, p50 {percentile(seconds, 0.5) * 1000:.0f} "
        f"ms, p95 {percentile(seconds, 0.95) * 1000:.0f} ms, p99 "
        f"{percentile(seconds, 0.99) * 1000:.0f} ms, mean "
        f"{statistics.mean(seconds) * 1000:.0f} ms"
    )
    print(
        "statuses: "
        + ", ".join(f"{status}: {count}" for status, count in sorted(
            client.statuses.items(), key=lambda item: str(item[0])))
    )  # fmt: skip
    print(f"5xx: {server_errors}")
    print(f"duplicates (active copies of one statement of one user): {duplicates}")
    print(f"sync_vectors: {sync.stdout.strip() or sync.stderr.strip()}")
    print(f"reconcile_vectors exit code: {reconcile.returncode}")
    if reconcile.returncode:
        print(reconcile.stdout[-2000:])


if __name__ == "__main__":
    main()
