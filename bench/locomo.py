"""Recall on LoCoMo through the HTTP API, on the embedded defaults (no LLM).

    python bench/locomo.py PATH_TO_LOCOMO_JSON [--data-dir DIR]

For each conversation: a fresh end user, every session imported through
POST /api/v1/memories/import (turns dated by their session, dia_id as the client
message id), then each question of categories 1-4 searched through
POST /api/v1/memories/search with topK 5 and 10. recall@k is the share of a
question's evidence turns that some returned memory came from (its provenance).
Prints recall per category and overall, the words the ten memories carry,
ingestion throughput, search latency and memories stored per conversation.
"""

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import machine  # bench/machine.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
EVIDENCE = re.compile(r"D:?(\d+):(\d+)")


def configure(data_dir: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ltm_project.settings")
    os.environ["LTM_SECRET_KEY"] = "bench-only-secret"  # noqa: S105
    os.environ["LTM_DATA_DIR"] = data_dir
    Path(data_dir, "static").mkdir(exist_ok=True)
    os.environ["LTM_RATE_LIMIT"] = ""
    os.environ["LTM_ALLOWED_HOSTS"] = "testserver"
    # The in-process client speaks plain HTTP; no TLS proxy redirects it.
    os.environ["LTM_SSL_REDIRECT"] = "false"
    os.environ.pop("DATABASE_URL", None) if "--keep-db-url" not in sys.argv else None
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def session_turns(conversation: dict) -> list[tuple[datetime, list[dict]]]:
    sessions = []
    for key, turns in conversation.items():
        match = re.fullmatch(r"session_(\d+)", key)
        if match and turns:
            when = datetime.strptime(
                conversation[f"{key}_date_time"], "%I:%M %p on %d %B, %Y"
            ).replace(tzinfo=UTC)
            sessions.append((int(match.group(1)), when, turns))
    return [(when, turns) for _, when, turns in sorted(sessions)]


def turn_text(turn: dict) -> str:
    # A turn that shared a photo carries its caption, as a client would send it.
    if turn.get("blip_caption"):
        return f"{turn['text']} (shares a photo: {turn['blip_caption']})"
    return turn["text"]


def evidence_ids(question: dict) -> set[str]:
    found = set()
    for entry in question.get("evidence", []):
        for session, turn in EVIDENCE.findall(entry):
            found.add(f"D{int(session)}:{int(turn)}")
    return found


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def main() -> None:  # noqa: C901, PLR0915 - a linear report
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="locomo10.json or a slice of it")
    parser.add_argument("--data-dir", default="")
    parser.add_argument(
        "--keep-db-url",
        action="store_true",
        help="use DATABASE_URL instead of a fresh SQLite file",
    )
    args = parser.parse_args()
    configure(args.data_dir or tempfile.mkdtemp(prefix="ltm-locomo-"))

    from rest_framework.test import APIClient

    from accounts.services import tenant_create, token_issue
    from memories.models import Memory
    from memories.providers.embeddings import get_embedder

    data = json.loads(Path(args.path).read_text())
    from accounts.models import Tenant

    # With --data-dir, a second run reuses the first's imports (skipped by their
    # ids) and measures search alone, e.g. under other search settings.
    tenant = Tenant.objects.filter(slug="locomo").first() or tenant_create(
        slug="locomo"
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_issue(tenant=tenant).secret}")
    get_embedder().embed(["warm up"])
    # The first request of a process loads the URLs and the API's modules once;
    # the figures are a warm service's.
    client.post(
        "/api/v1/memories/search",
        {"userId": "warm-up", "query": "warm up"},
        format="json",
    )

    recall = defaultdict(list)  # (category, k) -> [recall]
    words_at_10: list[int] = []
    latencies: list[float] = []
    turns_total, import_seconds = 0, 0.0
    per_conversation = []
    for sample in data:
        user_id = sample["sample_id"]
        conversation = sample["conversation"]
        for when, turns in session_turns(conversation):
            messages = [
                {
                    "speaker": turn["speaker"],
                    "text": turn_text(turn),
                    "sentAt": (when + timedelta(seconds=30 * index)).isoformat(),
                    "clientMessageId": turn["dia_id"],
                }
                for index, turn in enumerate(turns)
            ]
            started = time.perf_counter()
            response = client.post(
                "/api/v1/memories/import",
                {"userId": user_id, "messages": messages},
                format="json",
            )
            import_seconds += time.perf_counter() - started
            assert response.status_code == 200, response.content
            turns_total += len(turns)
        stored = Memory.objects.filter(tenant=tenant, user_id=user_id).count()
        scored = 0
        for question in sample["qa"]:
            if question["category"] not in CATEGORIES:
                continue
            evidence = evidence_ids(question)
            if not evidence:
                continue
            scored += 1
            for k in (5, 10):
                started = time.perf_counter()
                response = client.post(
                    "/api/v1/memories/search",
                    {"userId": user_id, "query": question["question"], "topK": k},
                    format="json",
                )
                latencies.append(time.perf_counter() - started)
                assert response.status_code == 200, response.content
                hits = response.json()["hits"]
                found = {
                    source["clientMessageId"]
                    for hit in hits
                    for source in hit["provenance"]
                }
                recall[(question["category"], k)].append(
                    len(found & evidence) / len(evidence)
                )
                if k == 10:
                    words_at_10.append(sum(len(hit["text"].split()) for hit in hits))
        turns = sum(len(t) for _, t in session_turns(conversation))
        per_conversation.append((user_id, turns, stored, scored))

    print("LoCoMo recall through the HTTP API (embedded defaults, no language model)")
    print(f"file: {args.path}")
    print(
        f"machine: {machine.describe()}; database: "
        f"{__import__('django.db').db.connection.vendor}"
    )
    print()
    print(f"{'category':<14}{'questions':>10}{'recall@5':>10}{'recall@10':>11}")
    for category, name in CATEGORIES.items():
        at5, at10 = recall[(category, 5)], recall[(category, 10)]
        if at5:
            print(
                f"{name:<14}{len(at5):>10}{statistics.mean(at5):>10.3f}"
                f"{statistics.mean(at10):>11.3f}"
            )
    every5 = [v for (c, k), values in recall.items() if k == 5 for v in values]
    every10 = [v for (c, k), values in recall.items() if k == 10 for v in values]
    print(
        f"{'overall':<14}{len(every5):>10}{statistics.mean(every5):>10.3f}"
        f"{statistics.mean(every10):>11.3f}"
    )
    print()
    print(
        f"words in the 10 memories returned: mean {statistics.mean(words_at_10):.1f}, "
        f"max {max(words_at_10)}"
    )
    print(
        f"ingestion: {turns_total} turns in {import_seconds:.2f} s = "
        f"{turns_total / import_seconds:.1f} turns/s"
    )
    print(
        f"search latency over {len(latencies)} requests: "
        f"p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
        f"p95 {percentile(latencies, 0.95) * 1000:.1f} ms"
    )
    for user_id, turns, stored, scored in per_conversation:
        print(
            f"{user_id}: {turns} turns, {stored} memories stored, "
            f"{scored} questions scored"
        )


if __name__ == "__main__":
    main()
