"""Calls to S3 Vectors per operation, and reconciliation time, on the stand-in.

    python bench/s3vectors.py [--reconcile-vectors 100000] [--forget 10000]

Runs the service with LTM_VECTOR_STORE=s3vectors against the test suite's
stand-in for S3 Vectors (moto's backend, extended; no AWS account, no network)
and counts the calls each operation makes, by operation name:
- POST /api/v1/message, over a scripted conversation of 20 messages;
- POST /api/v1/memories/import of 1,000 messages (two requests of 500);
- forgetting N memories of one user in one go (the service a bulk forget uses);
- reconcile_vectors over M vectors (wall time; the stand-in runs in-process, so
  the time is our code's plus the stand-in's, not AWS's network);
- a filtered query in ENHANCED and in CLASSIC mode.
Lower bounds for writes: ceil(n / 500) PutVectors or DeleteVectors calls.
"""

import argparse
import math
import os
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "ltm-bench"
CONVERSATION = [
    "Hi! My name is Dana and I live in Lisbon.",
    "I work as a nurse at the city hospital.",
    "What's the weather like today?",
    "I am allergic to peanuts and shellfish.",
    "My sister Maya is visiting next Friday.",
    "Where do I live?",
    "I started learning the cello last month.",
    "My favourite food is grilled sardines.",
    "Can you remind me what I do for work?",
    "I moved to Porto this week.",
    "I have a dog called Biscuit.",
    "Biscuit is three years old and loves the beach.",
    "What do you know about my family?",
    "I am training for a half marathon in May.",
    "My favourite food is now ramen.",
    "Thanks, that's all for now.",
    "I bought a green bicycle yesterday.",
    "My birthday is on 12 March.",
    "Where do I live now?",
    "I volunteer at the animal shelter on Sundays.",
]


def configure(data_dir: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ltm_project.settings")
    os.environ["LTM_SECRET_KEY"] = "bench-only-secret"  # noqa: S105
    os.environ["LTM_DATA_DIR"] = data_dir
    Path(data_dir, "static").mkdir(exist_ok=True)
    os.environ["LTM_RATE_LIMIT"] = ""
    os.environ["LTM_ALLOWED_HOSTS"] = "testserver"
    # The in-process client speaks plain HTTP; no TLS proxy redirects it.
    os.environ["LTM_SSL_REDIRECT"] = "false"
    os.environ["LTM_VECTOR_STORE"] = "s3vectors"
    os.environ["LTM_S3VECTORS_BUCKET"] = BUCKET
    os.environ["LTM_S3VECTORS_REGION"] = "us-east-1"
    os.environ.pop("DATABASE_URL", None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def per_call(calls: Counter, divisor: int = 1) -> str:
    return ", ".join(
        f"{name} {count / divisor:.2f}" if divisor > 1 else f"{name} {count}"
        for name, count in sorted(calls.items())
    )


def main() -> None:  # noqa: PLR0915 - a linear report
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reconcile-vectors", type=int, default=100_000)
    parser.add_argument("--forget", type=int, default=10_000)
    args = parser.parse_args()
    configure(tempfile.mkdtemp(prefix="ltm-s3bench-"))

    import numpy as np
    from django.core.management import call_command
    from django.db import transaction
    from rest_framework.test import APIClient

    from accounts.services import tenant_create, token_issue
    from memories import outbox, writes
    from memories.models import Memory
    from memories.providers.embeddings import get_embedder
    from memories.vectorstores import Namespace, get_vector_store
    from memories.vectorstores.base import VectorRecord
    from tests.fakes.s3vectors import fake_s3vectors

    with fake_s3vectors() as fake:
        fake.client().create_vector_bucket(vectorBucketName=BUCKET)
        tenant = tenant_create(slug=f"s3bench-{int(time.time())}")
        client = APIClient()
        client.credentials(
            HTTP_AUTHORIZATION=f"Bearer {token_issue(tenant=tenant).secret}"
        )
        get_embedder().embed(["warm up"])
        print("Calls to S3 Vectors (stand-in), by operation")

        # -- /message ------------------------------------------------------
        client.post(
            "/api/v1/message", {"userId": "warm", "message": "Hello."}, format="json"
        )
        fake.reset_calls()
        per_message = []
        for text in CONVERSATION:
            before = Counter(fake.calls)
            response = client.post(
                "/api/v1/message", {"userId": "dana", "message": text}, format="json"
            )
            assert response.status_code == 200, response.content
            per_message.append(sum((fake.calls - before).values()))
        print(
            f"POST /message, {len(CONVERSATION)} messages: "
            f"{per_call(fake.calls, len(CONVERSATION))} per message; "
            f"total calls per message min {min(per_message)}, "
            f"max {max(per_message)}"
        )

        # -- import of 1,000 messages ----------------------------------------
        fake.reset_calls()
        start = datetime(2026, 1, 1, tzinfo=UTC)
        rng = np.random.default_rng(11)
        words = [f"w{i}" for i in range(3000)]
        for batch in range(2):
            messages = [
                {
                    "text": (
                        f"I visited {rng.choice(words)} with {rng.choice(words)}. "
                        f"I bought a {rng.choice(words)}."
                    ),
                    "sentAt": (start + timedelta(minutes=batch * 500 + i)).isoformat(),
                }
                for i in range(500)
            ]
            response = client.post(
                "/api/v1/memories/import",
                {"userId": "importer", "messages": messages},
                format="json",
            )
            assert response.status_code == 200, response.content
        stored = Memory.objects.filter(
            tenant=tenant, user_id="importer", status="active"
        ).count()
        print(
            f"import of 1,000 messages ({stored} memories): {per_call(fake.calls)}; "
            f"lower bound for puts ceil({stored}/500) = {math.ceil(stored / 500)}"
        )

        # -- forget of N memories ------------------------------------------------
        embedder = get_embedder()
        texts = [f"fact {i} about {words[i % len(words)]}" for i in range(args.forget)]
        vectors = embedder.embed(texts)
        with transaction.atomic(), outbox.vector_sync_batch():
            writes.memories_create(
                memories=[
                    writes.memory_build(
                        tenant=tenant,
                        user_id="leaver",
                        kind="fact",
                        text=text,
                        vector=vector,
                        message=None,
                        actor="bench",
                    )
                    for text, vector in zip(texts, vectors, strict=True)
                ],
                actor="bench",
            )
        memories = list(
            Memory.objects.filter(tenant=tenant, user_id="leaver", status="active")
        )
        fake.reset_calls()
        started = time.perf_counter()
        with transaction.atomic(), outbox.vector_sync_batch():
            for memory in memories:
                writes.memory_delete(memory=memory, actor="bench")
        seconds = time.perf_counter() - started
        print(
            f"forget of {len(memories)} memories: {per_call(fake.calls)}; "
            f"lower bound ceil({len(memories)}/500) = "
            f"{math.ceil(len(memories) / 500)}; {seconds:.1f} s"
        )

        # -- reconcile over M vectors ------------------------------------------
        store = get_vector_store()
        count = args.reconcile_vectors
        bulk_user = "bulk"
        rows = []
        dimension = embedder.dimension
        base = rng.standard_normal(dimension).astype(np.float32)
        for i in range(count):
            vector = base + 0.01 * rng.standard_normal(dimension).astype(np.float32)
            rows.append(
                Memory(
                    tenant=tenant,
                    user_id=bulk_user,
                    text=f"bulk memory {i}",
                    content_hash=writes.memory_digest(
                        kind="fact", role="", speaker="", text=f"bulk memory {i}"
                    ),
                    embedding=vector.astype("<f4").tobytes(),
                    embedding_model=embedder.model_name,
                    embedding_dimension=dimension,
                    updated_by="bench",
                )
            )
        Memory.objects.bulk_create(rows, batch_size=2000)
        namespace = Namespace(tenant_id=tenant.pk, user_id=bulk_user)
        loaded = time.perf_counter()
        batch: list[VectorRecord] = []
        for memory in Memory.objects.filter(tenant=tenant, user_id=bulk_user).iterator(
            chunk_size=2000
        ):
            batch.append(
                VectorRecord(
                    key=str(memory.vector_key),
                    vector=np.frombuffer(bytes(memory.embedding), dtype="<f4"),
                    metadata=outbox.vector_metadata(memory),
                )
            )
            if len(batch) == 5000:
                store.put(namespace=namespace, records=batch)
                batch = []
        if batch:
            store.put(namespace=namespace, records=batch)
        print(
            f"loaded {count} vectors into the stand-in in "
            f"{time.perf_counter() - loaded:.1f} s"
        )
        fake.reset_calls()
        started = time.perf_counter()
        out = StringIO()
        call_command("reconcile_vectors", "--no-progress", stdout=out)
        seconds = time.perf_counter() - started
        print(
            f"reconcile_vectors over {store.count()} vectors: {seconds:.1f} s; "
            f"{per_call(fake.calls)}"
        )

        # -- filtered queries by index mode ------------------------------------
        query = base
        hits = {}
        for mode in ("ENHANCED", "CLASSIC"):
            fake.client().update_index_mode(
                vectorBucketName=BUCKET,
                indexName=store.index_name(tenant.pk),
                indexMode=mode,
            )
            store.close()  # forget the cached mode
            first_ids = sorted(
                Memory.objects.filter(tenant=tenant, user_id=bulk_user).values_list(
                    "pk", flat=True
                )[:5]
            )
            where = {"memory_id": {"$in": first_ids}}
            hits[mode] = store.query(
                namespace=namespace, vector=query, top_k=10, where=where
            )
        print(
            "a query for 10 nearest filtered to 5 of "
            f"{count} vectors returned: "
            + ", ".join(f"{mode} {len(found)}" for mode, found in hits.items())
            + " (the stand-in filters exactly in both modes; AWS documents that "
            "CLASSIC filters during the search and may return fewer)"
        )


if __name__ == "__main__":
    main()
