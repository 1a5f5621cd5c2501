"""MCP tool-call latency against a local gunicorn, beside the same REST call:
`recall` through /mcp (the MCP SDK's client, one session) against
POST /api/v1/memories/search (httpx), p50 and p95 of N calls each."""

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.mcp.helpers import call, http_session  # noqa: E402
from tests.servers import create_tenant, gunicorn, service_env  # noqa: E402

FACTS = [
    "I moved to Lisbon last month.",
    "I am allergic to peanuts.",
    "I have two cats, Miso and Tofu.",
    "I work as a nurse at the city hospital.",
    "My sister lives in Porto.",
]


def percentiles(samples: list[float]) -> str:
    cuts = statistics.quantiles(samples, n=20)
    return f"p50 {statistics.median(samples):.1f} ms, p95 {cuts[18]:.1f} ms"


async def measure_mcp(base: str, token: str, calls: int) -> list[float]:
    samples = []
    async with http_session(base, token) as session:
        for fact in FACTS:
            await call(session, "remember", text=fact)
        for _ in range(calls):
            started = time.perf_counter()
            await call(session, "recall", query="Where does my sister live?")
            samples.append((time.perf_counter() - started) * 1000)
    return samples


def measure_rest(base: str, token: str, calls: int) -> list[float]:
    samples = []
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}) as http:
        for _ in range(calls):
            started = time.perf_counter()
            http.post(
                f"{base}/api/v1/memories/search",
                json={"userId": "u1", "query": "Where does my sister live?"},
            ).raise_for_status()
            samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200)
    calls = parser.parse_args().calls
    with tempfile.TemporaryDirectory() as directory:
        data_dir = Path(directory)
        env = service_env(data_dir, f"sqlite:///{data_dir / 'ltm.sqlite3'}")
        token = create_tenant(env)
        with gunicorn(env, workers=2) as base:
            mcp = asyncio.run(measure_mcp(base, token, calls))
            rest = measure_rest(base, token, calls)
    print(f"MCP tools/call recall, {calls} calls: {percentiles(mcp)}")
    print(f"REST POST /api/v1/memories/search: {percentiles(rest)}")


if __name__ == "__main__":
    main()
