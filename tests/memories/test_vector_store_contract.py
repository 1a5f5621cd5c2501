"""One behaviour for every vector store: the local file and Amazon S3 Vectors.

The S3 store runs through the real boto3 client against moto's backend, extended
in the test suite with what moto lacks (queries, filters, text search, paging).
"""

import numpy as np
import pytest

from memories.vectorstores.base import (
    DimensionMismatchError,
    Namespace,
    VectorRecord,
    VectorStoreError,
)
from memories.vectorstores.filters import InvalidFilterError
from memories.vectorstores.local import LocalVectorStore
from memories.vectorstores.s3vectors import S3VectorsStore
from tests.fakes.s3vectors import fake_s3vectors

DIMENSION = 8
BUCKET = "ltm-contract"
ALICE = Namespace(tenant_id=1, user_id="alice")
BOB = Namespace(tenant_id=1, user_id="bob")
OTHER_TENANT_ALICE = Namespace(tenant_id=2, user_id="alice")
SPEAKERS = ["Ana", "Ben", "Cai"]


def unit(*values) -> np.ndarray:
    vector = np.zeros(DIMENSION, dtype=np.float32)
    vector[: len(values)] = values
    return vector / np.linalg.norm(vector)


def random_unit(rng) -> np.ndarray:
    vector = rng.standard_normal(DIMENSION).astype(np.float32)
    return vector / np.linalg.norm(vector)


class StoreFactory:
    """Opens stores of one kind over the same underlying data."""

    def __init__(self, kind: str, tmp_path, s3=None):
        self.kind = kind
        self.tmp_path = tmp_path
        self.s3 = s3

    def open(self, *, dimension=DIMENSION, model="test-model", prefix="contract"):
        if self.kind == "local":
            return LocalVectorStore(
                path=self.tmp_path / f"{prefix}.sqlite3",
                dimension=dimension,
                model_name=model,
            )
        return S3VectorsStore(
            bucket=BUCKET,
            dimension=dimension,
            model_name=model,
            index_prefix=prefix,
            region="us-east-1",
            list_segments=3,
        )


@pytest.fixture(params=["local", "s3vectors"])
def stores(request, tmp_path):
    if request.param == "local":
        yield StoreFactory("local", tmp_path)
        return
    with fake_s3vectors() as s3:
        s3.client().create_vector_bucket(vectorBucketName=BUCKET)
        yield StoreFactory("s3vectors", tmp_path, s3)


@pytest.fixture
def store(stores):
    opened = stores.open()
    yield opened
    opened.close()


def fill(store, namespace, count, rng, *, prefix="k"):
    records = [
        VectorRecord(
            f"{prefix}{i}",
            random_unit(rng),
            {
                "memory_id": i,
                "speaker": SPEAKERS[i % 3],
                "happened_at": 1_700_000_000 + i * 86_400,
                "text": f"memory number {i}",
            },
        )
        for i in range(count)
    ]
    store.put(namespace=namespace, records=records)
    return records


def test_put_then_get_returns_vector_and_metadata(store):
    vector = unit(1, 2, 3)
    store.put(
        namespace=ALICE,
        records=[VectorRecord("a", vector, {"text": "likes tea", "memory_id": 7})],
    )

    (record,) = store.get(namespace=ALICE, keys=["a", "missing"])

    assert record.key == "a"
    assert np.allclose(record.vector, vector, atol=1e-6)
    assert record.metadata["text"] == "likes tea"
    assert record.metadata["memory_id"] == 7


def test_putting_a_key_again_replaces_it(store):
    store.put(namespace=ALICE, records=[VectorRecord("a", unit(1), {"text": "old"})])
    store.put(namespace=ALICE, records=[VectorRecord("a", unit(0, 1), {"text": "new"})])

    (record,) = store.get(namespace=ALICE, keys=["a"])

    assert record.metadata["text"] == "new"
    assert np.allclose(record.vector, unit(0, 1), atol=1e-6)
    assert store.count(namespace=ALICE) == 1


def test_a_batch_over_500_is_stored_whole(store):
    rng = np.random.default_rng(1)
    records = fill(store, ALICE, 1203, rng)

    assert store.count(namespace=ALICE) == 1203
    keys = [record.key for record in records[::97]]
    assert [record.key for record in store.get(namespace=ALICE, keys=keys)] == keys
    assert len(store.get(namespace=ALICE, keys=[r.key for r in records[:250]])) == 250


def test_delete_removes_and_is_idempotent(store):
    rng = np.random.default_rng(2)
    fill(store, ALICE, 5, rng)

    store.delete(namespace=ALICE, keys=["k1", "k3", "never-there"])
    store.delete(namespace=ALICE, keys=["k1"])

    assert sorted(store.list_keys(namespace=ALICE)) == ["k0", "k2", "k4"]
    assert store.get(namespace=ALICE, keys=["k1"]) == []


def test_query_orders_by_true_cosine_similarity(store):
    rng = np.random.default_rng(3)
    records = fill(store, ALICE, 300, rng)
    query = random_unit(rng)
    expected = sorted(
        records, key=lambda record: -float(record.vector @ query)
    )  # exact similarity, computed here

    hits = store.query(namespace=ALICE, vector=query, top_k=10)

    assert [hit.key for hit in hits] == [record.key for record in expected[:10]]
    # The local store holds vectors in half precision: within 2**-11 of exact.
    for hit, record in zip(hits, expected, strict=False):
        assert hit.score == pytest.approx(float(record.vector @ query), abs=2**-11)


def test_top_k_larger_than_the_namespace_returns_everything(store):
    fill(store, ALICE, 3, np.random.default_rng(4))

    assert len(store.query(namespace=ALICE, vector=unit(1), top_k=50)) == 3
    assert store.query(namespace=BOB, vector=unit(1), top_k=50) == []


DAY = 86_400
START = 1_700_000_000


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"speaker": "Ana"}, lambda m: m["speaker"] == "Ana"),
        ({"speaker": {"$eq": "Ben"}}, lambda m: m["speaker"] == "Ben"),
        ({"speaker": {"$ne": "Ben"}}, lambda m: m["speaker"] != "Ben"),
        (
            {"happened_at": {"$gt": START + 10 * DAY}},
            lambda m: m["happened_at"] > START + 10 * DAY,
        ),
        (
            {"happened_at": {"$gte": START + 10 * DAY}},
            lambda m: m["happened_at"] >= START + 10 * DAY,
        ),
        (
            {"happened_at": {"$lt": START + 5 * DAY}},
            lambda m: m["happened_at"] < START + 5 * DAY,
        ),
        (
            {"happened_at": {"$lte": START + 5 * DAY}},
            lambda m: m["happened_at"] <= START + 5 * DAY,
        ),
        (
            {"speaker": {"$in": ["Ana", "Cai"]}},
            lambda m: m["speaker"] in ("Ana", "Cai"),
        ),
        ({"speaker": {"$nin": ["Ana", "Cai"]}}, lambda m: m["speaker"] == "Ben"),
        ({"slot": {"$exists": True}}, lambda m: "slot" in m),
        ({"slot": {"$exists": False}}, lambda m: "slot" not in m),
        (
            {
                "$and": [
                    {"speaker": "Ana"},
                    {"happened_at": {"$lt": START + 12 * DAY}},
                ]
            },
            lambda m: m["speaker"] == "Ana" and m["happened_at"] < START + 12 * DAY,
        ),
        (
            {"$or": [{"speaker": "Ben"}, {"slot": {"$eq": "home"}}]},
            lambda m: m["speaker"] == "Ben" or m.get("slot") == "home",
        ),
        (
            {"speaker": "Cai", "happened_at": {"$gte": START + 6 * DAY}},
            lambda m: m["speaker"] == "Cai" and m["happened_at"] >= START + 6 * DAY,
        ),
    ],
)
def test_every_filter_operator_keeps_exactly_the_matching_vectors(
    store, where, expected
):
    rng = np.random.default_rng(5)
    metadata = {}
    records = []
    for i in range(20):
        values = {"speaker": SPEAKERS[i % 3], "happened_at": START + i * DAY}
        if i % 4 == 0:
            values["slot"] = "home"
        metadata[f"k{i}"] = values
        records.append(VectorRecord(f"k{i}", random_unit(rng), values))
    store.put(namespace=ALICE, records=records)

    hits = store.query(namespace=ALICE, vector=unit(1), top_k=50, where=where)

    assert {hit.key for hit in hits} == {
        key for key, values in metadata.items() if expected(values)
    }


def test_a_malformed_filter_is_refused_before_any_call(store):
    with pytest.raises(InvalidFilterError):
        store.query(
            namespace=ALICE, vector=unit(1), top_k=5, where={"speaker": {"$like": "A"}}
        )


def test_hybrid_query_finds_by_words_what_the_vector_misses(store):
    records = [
        VectorRecord(
            f"k{i}",
            unit(1, i * 0.01),
            {"text": f"ordinary fact {i}", "keywords": f"ordinary fact {i}"},
        )
        for i in range(30)
    ]
    records.append(
        VectorRecord(
            "rare",
            unit(0, 0, 0, 0, 0, 0, 0, 1),
            {"text": "Xiomara adopted a dog", "keywords": "Xiomara adopted a dog"},
        )
    )
    store.put(namespace=ALICE, records=records)

    if not store.capabilities.text_search:
        # Keywords are ranked by the database for this store.
        with pytest.raises(VectorStoreError):
            store.hybrid_query(namespace=ALICE, vector=unit(1), text="Xiomara", top_k=5)
        return
    vector_only = store.query(namespace=ALICE, vector=unit(1), top_k=5)
    hybrid = store.hybrid_query(
        namespace=ALICE, vector=unit(1), text="Xiomara", top_k=5
    )

    assert "rare" not in {hit.key for hit in vector_only}
    assert "rare" in {hit.key for hit in hybrid}


def test_namespaces_never_mix(store):
    store.put(namespace=ALICE, records=[VectorRecord("same", unit(1), {"text": "a"})])
    store.put(namespace=BOB, records=[VectorRecord("same", unit(0, 1), {"text": "b"})])
    store.put(
        namespace=OTHER_TENANT_ALICE,
        records=[VectorRecord("same", unit(1, 1), {"text": "c"})],
    )

    (bob_record,) = store.get(namespace=BOB, keys=["same"])
    assert bob_record.metadata["text"] == "b"
    assert [h.key for h in store.query(namespace=BOB, vector=unit(1), top_k=10)] == [
        "same"
    ]
    store.delete(namespace=BOB, keys=["same"])

    assert store.get(namespace=BOB, keys=["same"]) == []
    assert store.get(namespace=ALICE, keys=["same"])[0].metadata["text"] == "a"
    assert (
        store.get(namespace=OTHER_TENANT_ALICE, keys=["same"])[0].metadata["text"]
        == "c"
    )


def test_a_user_cannot_reach_another_users_vector_by_its_key(store):
    store.put(namespace=ALICE, records=[VectorRecord("secret", unit(1), {})])

    assert store.get(namespace=BOB, keys=["secret"]) == []
    store.delete(namespace=BOB, keys=["secret"])
    assert store.query(namespace=BOB, vector=unit(1), top_k=10) == []
    assert store.get(namespace=ALICE, keys=["secret"]) != []


def test_scan_lists_every_vector_once_with_its_namespace(store):
    rng = np.random.default_rng(6)
    fill(store, ALICE, 1100, rng)
    fill(store, BOB, 7, rng, prefix="b")
    fill(store, OTHER_TENANT_ALICE, 3, rng, prefix="o")

    tenant_one = list(store.scan(tenant_id=1))
    everything = list(store.scan())

    assert len(tenant_one) == 1107
    assert len({(s.namespace, s.key) for s in tenant_one}) == 1107
    assert {s.namespace for s in tenant_one} == {ALICE, BOB}
    assert len(everything) == 1110
    by_key = {(s.namespace, s.key): s for s in everything}
    assert by_key[(OTHER_TENANT_ALICE, "o2")].metadata["memory_id"] == 2
    with_vectors = list(store.scan(tenant_id=2, with_vectors=True))
    assert all(
        s.vector is not None and s.vector.shape == (DIMENSION,) for s in with_vectors
    )


def test_a_vector_of_the_wrong_dimension_is_refused(store):
    with pytest.raises(DimensionMismatchError):
        store.put(namespace=ALICE, records=[VectorRecord("a", np.ones(DIMENSION + 1))])
    assert store.count(namespace=ALICE) == 0


def test_a_store_of_another_model_or_dimension_is_refused(stores):
    first = stores.open()
    first.put(namespace=ALICE, records=[VectorRecord("a", unit(1), {})])

    with pytest.raises(DimensionMismatchError):
        stores.open(dimension=DIMENSION * 2).verify()
    with pytest.raises(DimensionMismatchError):
        stores.open(model="another-model").verify()


@pytest.mark.parametrize(
    "where",
    [
        {"user_id": "bob"},
        {"$or": [{"user_id": "bob"}, {"user_id": {"$ne": "bob"}}]},
        {"tenant_id": {"$in": [1, 2]}},
        {"$or": [{"tenant_id": 2}, {"memory_id": {"$exists": True}}]},
    ],
)
def test_no_filter_reaches_outside_the_namespace(store, where):
    rng = np.random.default_rng(7)
    for namespace in (ALICE, BOB, OTHER_TENANT_ALICE):
        store.put(
            namespace=namespace,
            records=[
                VectorRecord(
                    f"{namespace.tenant_id}-{namespace.user_id}-{i}",
                    random_unit(rng),
                    {
                        "memory_id": i,
                        "user_id": namespace.user_id,
                        "tenant_id": namespace.tenant_id,
                    },
                )
                for i in range(4)
            ],
        )

    hits = store.query(namespace=ALICE, vector=unit(1), top_k=50, where=where)

    assert all(hit.key.startswith("1-alice-") for hit in hits)


def test_capabilities_say_where_queries_and_keywords_run(store):
    # The local file is queried in this process; S3 Vectors is remote and may
    # rank keywords itself (only with text search configured).
    assert store.capabilities.local_queries is (isinstance(store, LocalVectorStore))
    if isinstance(store, LocalVectorStore):
        assert store.capabilities.text_search is False


def test_compact_keeps_every_vector_still_stored(store):
    store.put(
        namespace=ALICE,
        records=[VectorRecord(k, unit(1, i), {"text": k}) for i, k in enumerate("abc")],
    )
    store.delete(namespace=ALICE, keys=["b"])

    store.compact()
    store.compact()  # nothing left to do is no error

    assert sorted(store.list_keys(namespace=ALICE)) == ["a", "c"]
    assert [r.metadata["text"] for r in store.get(namespace=ALICE, keys=["c"])] == ["c"]
