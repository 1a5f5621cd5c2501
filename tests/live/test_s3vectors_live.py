"""Against real Amazon S3 Vectors: opt-in, never in CI.

    LTM_LIVE_S3VECTORS_BUCKET=my-vector-bucket AWS_PROFILE=... \\
        .venv/bin/python -m pytest tests/live -m live

Needs an existing vector bucket and credentials from the standard AWS chain
(region from LTM_LIVE_S3VECTORS_REGION or the chain). Each run makes its own
index under a unique prefix and deletes it at the end.
"""

import os
import uuid

import numpy as np
import pytest

from memories.vectorstores.base import Namespace, VectorRecord
from memories.vectorstores.s3vectors import S3VectorsStore

BUCKET = os.environ.get("LTM_LIVE_S3VECTORS_BUCKET", "")
pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not BUCKET, reason="set LTM_LIVE_S3VECTORS_BUCKET to run"),
]
DIMENSION = 16
ALICE = Namespace(tenant_id=1, user_id="alice")
BOB = Namespace(tenant_id=1, user_id="bob")


@pytest.fixture
def live_store():
    prefix = f"ltm-live-{uuid.uuid4().hex[:8]}"
    store = S3VectorsStore(
        bucket=BUCKET,
        dimension=DIMENSION,
        model_name="live-test",
        index_prefix=prefix,
        region=os.environ.get("LTM_LIVE_S3VECTORS_REGION") or None,
    )
    yield store
    store.client.delete_index(vectorBucketName=BUCKET, indexName=f"{prefix}-t1")


def test_the_store_round_trips_on_real_s3_vectors(live_store):
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((600, DIMENSION)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    live_store.put(
        namespace=ALICE,
        records=[
            VectorRecord(
                f"k{i}",
                vector,
                {
                    "memory_id": i,
                    "speaker": "Ana" if i % 2 else "Ben",
                    "text": f"memory {i}",
                    "keywords": f"memory {i} about Xiomara"
                    if i == 7
                    else f"memory {i}",
                },
            )
            for i, vector in enumerate(vectors)
        ],
    )
    live_store.put(namespace=BOB, records=[VectorRecord("k1", vectors[1], {})])

    hits = live_store.query(namespace=ALICE, vector=vectors[3], top_k=5)
    assert hits[0].key == "k3"
    filtered = live_store.query(
        namespace=ALICE, vector=vectors[3], top_k=50, where={"speaker": "Ana"}
    )
    assert filtered
    assert all(int(hit.key[1:]) % 2 for hit in filtered)
    hybrid = live_store.hybrid_query(
        namespace=ALICE, vector=vectors[100], text="Xiomara", top_k=10
    )
    assert "k7" in {hit.key for hit in hybrid}
    assert (
        len(live_store.get(namespace=ALICE, keys=[f"k{i}" for i in range(150)])) == 150
    )
    assert live_store.count(namespace=ALICE) == 600
    live_store.delete(namespace=BOB, keys=["k1"])
    assert live_store.get(namespace=ALICE, keys=["k1"])
    assert live_store.count(namespace=BOB) == 0
