"""Latency of POST /message and of recall, on the embedded defaults.

    python bench/latency.py [--memories 1000] [--requests 200] [--keep-db-url]

In one warm process, through the HTTP API (Django's in-process client, a real
token): imports generated facts until one user holds the asked number of memories,
then measures POST /api/v1/memories/search (recall through the API), the recall
service alone (no HTTP layer), and POST /message with a mix of statements and
questions. Prints p50, p95 and max for each.
"""

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import machine  # bench/machine.py, beside this script

ROOT = Path(__file__).resolve().parent.parent

PEOPLE = ["my sister", "my brother", "my mother", "my father", "my friend Sam",
          "my colleague Priya", "my neighbour Tom", "my cousin Lea", "my aunt Rosa",
          "my uncle Ken", "my partner Alex", "my boss Maria"]  # fmt: skip
PLACES = ["Lisbon", "Porto", "Berlin", "Kyoto", "Oslo", "Denver", "Nairobi", "Lima",
          "Hanoi", "Quebec", "Seville", "Tbilisi", "Perth", "Cusco", "Bergen",
          "Valletta", "Tallinn", "Ghent", "Split", "Bled"]  # fmt: skip
ACTIVITIES = ["went hiking", "took a cooking class", "ran a half marathon",
              "visited a museum", "learned to sail", "played chess",
              "went birdwatching", "tried pottery", "saw a jazz concert",
              "rented a canoe", "climbed a volcano",
              "went to a night market"]  # fmt: skip
THINGS = ["a green bicycle", "a vintage camera", "a sourdough starter",
          "a pair of hiking boots", "a telescope", "an old piano", "a bonsai tree",
          "a record player", "a sewing machine", "a kayak"]  # fmt: skip
QUESTIONS = ["What did I do in {place}?", "Who did I travel with to {place}?",
             "When did I {activity}?", "Where did I buy {thing}?",
             "What do I know about {person}?"]  # fmt: skip


def configure(data_dir: str, keep_db_url: bool) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ltm_project.settings")
    os.environ["LTM_SECRET_KEY"] = "bench-only-secret"  # noqa: S105
    os.environ["LTM_DATA_DIR"] = data_dir
    Path(data_dir, "static").mkdir(exist_ok=True)
    os.environ["LTM_RATE_LIMIT"] = ""
    os.environ["LTM_ALLOWED_HOSTS"] = "testserver"
    # The in-process client speaks plain HTTP; no TLS proxy redirects it.
    os.environ["LTM_SSL_REDIRECT"] = "false"
    if not keep_db_url:
        os.environ.pop("DATABASE_URL", None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def generated_facts(rng: random.Random):
    """Endless distinct first-person facts."""
    serial = 0
    while True:
        serial += 1
        person, place = rng.choice(PEOPLE), rng.choice(PLACES)
        activity, thing = rng.choice(ACTIVITIES), rng.choice(THINGS)
        yield rng.choice(
            [
                f"I {activity} in {place} with {person} (trip {serial}).",
                f"I bought {thing} in {place} for {serial} euros.",
                f"{person.capitalize()} gave me {thing} on day {serial} of the year.",
                f"I plan to visit {place} with {person} in week {serial % 52 + 1}.",
            ]
        )


def summary(name: str, seconds: list[float]) -> str:
    ordered = sorted(seconds)

    def at(share: float) -> float:
        return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))] * 1000

    return (
        f"{name:<38}{len(ordered):>9}{at(0.5):>10.1f}{at(0.95):>10.1f}"
        f"{ordered[-1] * 1000:>10.1f}{statistics.mean(ordered) * 1000:>10.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--keep-db-url", action="store_true")
    args = parser.parse_args()
    configure(tempfile.mkdtemp(prefix="ltm-latency-"), args.keep_db_url)

    from django.db import connection
    from rest_framework.test import APIClient

    from accounts.services import tenant_create, token_issue
    from memories.models import Memory
    from memories.providers.embeddings import get_embedder
    from memories.selectors import memory_recall

    rng = random.Random(7)
    tenant = tenant_create(slug=f"latency-{int(time.time())}")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_issue(tenant=tenant).secret}")
    user_id = "bench-user"
    started_at = datetime(2026, 1, 1, tzinfo=UTC)

    def active() -> int:
        return Memory.objects.filter(
            tenant=tenant, user_id=user_id, status=Memory.Status.ACTIVE
        ).count()

    facts = generated_facts(rng)
    seeded_at = time.perf_counter()
    sent = 0
    while active() < args.memories:
        batch = [
            {
                "text": next(facts),
                "sentAt": (started_at + timedelta(minutes=sent + i)).isoformat(),
            }
            for i in range(min(200, args.memories - active()))
        ]
        sent += len(batch)
        response = client.post(
            "/api/v1/memories/import",
            {"userId": user_id, "messages": batch},
            format="json",
        )
        assert response.status_code == 200, response.content
    seeded = active()
    print(
        f"seeded {seeded} memories of one user from {sent} messages in "
        f"{time.perf_counter() - seeded_at:.1f} s"
    )

    def question() -> str:
        return rng.choice(QUESTIONS).format(
            place=rng.choice(PLACES),
            activity=rng.choice(ACTIVITIES).split(" ", 1)[1],
            thing=rng.choice(THINGS),
            person=rng.choice(PEOPLE),
        )

    def search() -> None:
        response = client.post(
            "/api/v1/memories/search",
            {"userId": user_id, "query": question(), "topK": 5},
            format="json",
        )
        assert response.status_code == 200, response.content

    embedder = get_embedder()

    def recall_service() -> None:
        query = question()
        memory_recall(
            tenant=tenant,
            user_id=user_id,
            query=query,
            vector=embedder.embed([query])[0],
        )

    def message() -> None:
        text = question() if rng.random() < 0.5 else next(facts)
        response = client.post(
            "/api/v1/message", {"userId": user_id, "message": text}, format="json"
        )
        assert response.status_code == 200, response.content

    results = []
    for name, call in (
        ("POST /api/v1/memories/search (top 5)", search),
        ("recall service, no HTTP (top 5)", recall_service),
        ("POST /api/v1/message", message),
    ):
        for _ in range(10):  # warm caches and the model's sessions
            call()
        timings = []
        for _ in range(args.requests):
            begun = time.perf_counter()
            call()
            timings.append(time.perf_counter() - begun)
        results.append(summary(name, timings))

    print(
        f"machine: {machine.describe()}; database: {connection.vendor}; "
        f"embedder: {embedder.model_name}; memories of the user at the end: {active()}"
    )
    print(f"{'':<38}{'requests':>9}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}"
          f"{'mean ms':>10}")  # fmt: skip
    for line in results:
        print(line)


if __name__ == "__main__":
    main()
