"""Search latency as one user's memories grow, on the embedded defaults.

    python bench/search_scale.py [--memories 1000 10000 100000] [--keep-db-url]

For each N, a fresh tenant's user gets N memories from the generator of
bench/user_data.py (rows with random unit vectors, a source message each,
keyword text), then 100 searches (recall service: embed the query, hybrid
search, top 10) are timed after 10 warm-up ones. Prints p50 and p95 and where
the time goes: the vector store's query, the keyword ranking, and the rest.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import user_data  # noqa: E402

QUERIES = [
    f"Which place did I visit with friend {i % 97} when I bought item {i % 31}?"
    for i in range(110)
]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--keep-db-url", action="store_true")
    args = parser.parse_args()
    user_data.configure(
        tempfile.mkdtemp(prefix="ltm-scale-"), keep_db_url=args.keep_db_url, s3=False
    )
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from accounts.models import Tenant
    from memories.providers.embeddings import get_embedder
    from memories.search import keyword_ranking
    from memories.selectors import memory_recall
    from memories.vectorstores import Namespace, get_vector_store

    embedder = get_embedder()
    vectors = embedder.embed(QUERIES)
    print("memories  search p50  p95 ms   store query p50  keyword p50 ms")
    for count in args.memories:
        slug = f"scale-{count}"
        user_data.generate(slug, count, seed=count)
        tenant = Tenant.objects.get(slug=slug)
        namespace = Namespace(tenant_id=tenant.pk, user_id=user_data.USER_ID)
        total, store_times, keyword_times = [], [], []
        for index, (query, vector) in enumerate(zip(QUERIES, vectors, strict=True)):
            started = time.perf_counter()
            memory_recall(
                tenant=tenant,
                user_id=user_data.USER_ID,
                query=query,
                top_k=10,
            )
            elapsed = time.perf_counter() - started
            started = time.perf_counter()
            get_vector_store().query(namespace=namespace, vector=vector, top_k=100)
            store = time.perf_counter() - started
            started = time.perf_counter()
            keyword_ranking(
                tenant=tenant, user_id=user_data.USER_ID, query=query, limit=100
            )
            keyword = time.perf_counter() - started
            if index >= 10:
                total.append(elapsed * 1000)
                store_times.append(store * 1000)
                keyword_times.append(keyword * 1000)
        print(
            f"{count:>8}  {statistics.median(total):10.1f}  "
            f"{percentile(total, 0.95):6.1f}   {statistics.median(store_times):15.1f}  "
            f"{statistics.median(keyword_times):14.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
