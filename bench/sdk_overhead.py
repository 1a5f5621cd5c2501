"""The time the Python SDK (clients/python) adds per call over raw httpx.

    python bench/sdk_overhead.py [--calls 300]

Starts gunicorn (one sync worker) on a fresh data directory and database
(SQLite, or a new database on the PostgreSQL server of DATABASE_URL), makes a
tenant, imports 20 messages for one end user, then sends the same requests
with an httpx.Client (a body encoded by hand, the answer's JSON decoded) and
with ltm_client.Client (the answer validated into its pydantic models),
alternately, over one kept-alive connection each: a page of 10 memories
(`GET /api/v1/memories`, little server time) and a search (`POST
/api/v1/memories/search`, top 10). Printed per operation: p50 of each, and p50
of the difference of each pair of calls made one after the other (the SDK's
overhead: building the request, the retry loop, parsing into models).
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from ltm_client import Client, ImportMessage  # noqa: E402

from tests.servers import (  # noqa: E402
    create_tenant,
    fresh_database,
    gunicorn,
    service_env,
)

USER = "bench-user"
STATEMENTS = [
    f"I {verb} {thing} {when}."
    for verb, thing, when in [
        ("bought", "a red bicycle", "last week"),
        ("visited", "my aunt in Porto", "yesterday"),
        ("started", "a pottery class", "in May"),
        ("adopted", "a grey cat", "two years ago"),
        ("planted", "tomatoes", "this spring"),
    ]
]


def _p50(values: list[float]) -> float:
    return statistics.median(values) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ltm-bench-sdk-") as directory:
        data_dir = Path(directory)
        with fresh_database(data_dir) as database_url:
            env = service_env(data_dir, database_url, LTM_RATE_LIMIT="")
            token = create_tenant(env)
            with gunicorn(env, workers=1) as base:
                run(base, token, args.calls)


def run(base: str, token: str, calls: int) -> None:
    sdk = Client(token, base)
    raw = httpx.Client(
        base_url=base,
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        timeout=60,
    )
    sdk.import_messages(
        USER,
        [
            ImportMessage(text=text, sent_at=f"2024-05-0{1 + n % 5}T10:00:00Z")
            for n, text in enumerate(STATEMENTS * 4)
        ],
    )
    search_body = {"userId": USER, "query": "What did I buy?", "topK": 10}

    def raw_page():
        response = raw.get("/api/v1/memories", params={"userId": USER, "limit": 10})
        response.raise_for_status()
        return response.json()

    def raw_search():
        response = raw.post(
            "/api/v1/memories/search",
            content=json.dumps(search_body).encode(),
            headers={"Content-Type": "application/json"},
        )
        response.raise_for_status()
        return response.json()

    operations = {
        "GET /api/v1/memories (10 a page)": (
            raw_page,
            lambda: sdk.memory_page(USER, limit=10),
        ),
        "POST /api/v1/memories/search (top 10)": (
            raw_search,
            lambda: sdk.search(USER, "What did I buy?", top_k=10),
        ),
    }
    print(f"{calls} calls of each, alternating raw httpx and the SDK, 1 worker")
    for name, (raw_call, sdk_call) in operations.items():
        for _ in range(20):  # warm both connections and the worker
            raw_call()
            sdk_call()
        raw_times, sdk_times, differences = [], [], []
        for index in range(calls):
            # Which goes first alternates, so neither always follows the other.
            order = [(raw_times, raw_call), (sdk_times, sdk_call)]
            if index % 2:
                order.reverse()
            pair = {}
            for times, call in order:
                started = time.perf_counter()
                call()
                pair[id(times)] = time.perf_counter() - started
                times.append(pair[id(times)])
            differences.append(pair[id(sdk_times)] - pair[id(raw_times)])
        print(
            f"{name}: raw p50 {_p50(raw_times):.2f} ms, SDK p50 "
            f"{_p50(sdk_times):.2f} ms, SDK overhead p50 {_p50(differences):.2f} ms"
        )
    sdk.close()
    raw.close()


if __name__ == "__main__":
    main()
