import multiprocessing

import numpy as np
import pytest

from memories.vectorstores.base import DimensionMismatchError, Namespace, VectorRecord
from memories.vectorstores.local import LocalVectorStore

DIMENSION = 8
ALICE = Namespace(tenant_id=1, user_id="alice")
BOB = Namespace(tenant_id=1, user_id="bob")
OTHER_TENANT_ALICE = Namespace(tenant_id=2, user_id="alice")


def unit(*values) -> np.ndarray:
    vector = np.zeros(DIMENSION, dtype=np.float32)
    vector[: len(values)] = values
    return vector / np.linalg.norm(vector)


@pytest.fixture
def path(tmp_path):
    return tmp_path / "vectors.sqlite3"


def open_store(path, dimension=DIMENSION, model="test-model"):
    return LocalVectorStore(path=path, dimension=dimension, model_name=model)


def test_query_orders_by_cosine_similarity(path):
    store = open_store(path)
    store.put(
        namespace=ALICE,
        records=[
            VectorRecord("far", unit(0, 1)),
            VectorRecord("near", unit(1, 0.1)),
            VectorRecord("middle", unit(1, 1)),
        ],
    )
    hits = store.query(namespace=ALICE, vector=unit(1, 0), top_k=2)
    assert [hit.key for hit in hits] == ["near", "middle"]
    assert hits[0].score == pytest.approx(float(unit(1, 0.1) @ unit(1, 0)), abs=1e-6)


def test_a_query_sees_only_its_own_namespace(path):
    store = open_store(path)
    store.put(namespace=ALICE, records=[VectorRecord("a", unit(1))])
    store.put(namespace=BOB, records=[VectorRecord("b", unit(1))])
    store.put(namespace=OTHER_TENANT_ALICE, records=[VectorRecord("c", unit(1))])
    assert [h.key for h in store.query(namespace=ALICE, vector=unit(1), top_k=10)] == [
        "a"
    ]
    assert store.get(namespace=ALICE, keys=["b", "c"]) == []
    store.delete(namespace=ALICE, keys=["b", "c"])
    assert len(store.get(namespace=BOB, keys=["b"])) == 1


def test_put_replaces_by_key_and_delete_is_idempotent(path):
    store = open_store(path)
    store.put(namespace=ALICE, records=[VectorRecord("k", unit(1), {"v": 1})])
    store.put(namespace=ALICE, records=[VectorRecord("k", unit(0, 1), {"v": 2})])
    (record,) = store.get(namespace=ALICE, keys=["k"])
    assert record.metadata == {"v": 2}
    store.delete(namespace=ALICE, keys=["k"])
    store.delete(namespace=ALICE, keys=["k"])
    assert store.get(namespace=ALICE, keys=["k"]) == []


def test_vectors_survive_a_restart(path):
    store = open_store(path)
    store.put(namespace=ALICE, records=[VectorRecord("k", unit(1, 2, 3), {"x": "y"})])
    store.close()
    reopened = open_store(path)
    (record,) = reopened.get(namespace=ALICE, keys=["k"])
    np.testing.assert_allclose(record.vector, unit(1, 2, 3), rtol=1e-6)
    assert reopened.query(namespace=ALICE, vector=unit(1, 2, 3), top_k=1)[0].key == "k"


def test_a_store_of_another_model_or_dimension_is_refused(path):
    open_store(path).close()
    with pytest.raises(DimensionMismatchError, match="dimension"):
        open_store(path, dimension=DIMENSION * 2)
    with pytest.raises(DimensionMismatchError, match="other-model"):
        open_store(path, model="other-model")
    with pytest.raises(DimensionMismatchError):
        open_store(path).put(namespace=ALICE, records=[VectorRecord("k", np.ones(3))])


def _write_many(path, worker: int, count: int) -> None:
    store = open_store(path)
    namespace = Namespace(tenant_id=1, user_id=f"user-{worker % 2}")
    for index in range(count):
        store.put(
            namespace=namespace,
            records=[VectorRecord(f"w{worker}-{index}", unit(1, worker, index))],
        )
    store.close()


def test_two_processes_can_write_at_once(path):
    open_store(path).close()
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_write_many, args=(path, w, 150)) for w in range(2)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
        assert process.exitcode == 0
    store = open_store(path)
    assert store.count() == 300
    assert store.count(namespace=Namespace(tenant_id=1, user_id="user-0")) == 150


def test_scan_lists_every_vector_or_one_tenants(path):
    store = open_store(path)
    store.put(namespace=ALICE, records=[VectorRecord("a", unit(1), {"n": 1})])
    store.put(namespace=BOB, records=[VectorRecord("b", unit(0, 1))])
    store.put(namespace=OTHER_TENANT_ALICE, records=[VectorRecord("c", unit(1))])
    listed = {(s.namespace, s.key): s for s in store.scan()}
    assert set(listed) == {(ALICE, "a"), (BOB, "b"), (OTHER_TENANT_ALICE, "c")}
    assert listed[ALICE, "a"].metadata == {"n": 1}
    assert listed[ALICE, "a"].vector is None
    assert {s.key for s in store.scan(tenant_id=1)} == {"a", "b"}
    (bob,) = [s for s in store.scan(tenant_id=1, with_vectors=True) if s.key == "b"]
    np.testing.assert_allclose(bob.vector, unit(0, 1), rtol=1e-6)


def test_scan_reads_in_pages_and_tolerates_deletes_while_it_runs(path):
    store = open_store(path)
    store.SCAN_PAGE = 3
    for namespace in (ALICE, BOB, OTHER_TENANT_ALICE):
        store.put(
            namespace=namespace,
            records=[VectorRecord(f"k{i}", unit(1, i)) for i in range(7)],
        )
    seen = []
    for stored in store.scan():
        seen.append((stored.namespace, stored.key))
        store.delete(namespace=stored.namespace, keys=[stored.key])
    assert len(seen) == len(set(seen)) == 21
    assert store.count() == 0
    assert [s.key for s in store.scan(tenant_id=3)] == []


def test_count_counts_all_or_one_namespace(path):
    store = open_store(path)
    store.put(namespace=ALICE, records=[VectorRecord("a", unit(1))])
    store.put(namespace=BOB, records=[VectorRecord(k, unit(1)) for k in "xy"])
    assert store.count() == 3
    assert store.count(namespace=BOB) == 2
    assert store.count(namespace=OTHER_TENANT_ALICE) == 0


def test_compact_leaves_no_copy_of_a_deleted_vectors_text_in_the_files(path):
    store = open_store(path)
    store.put(namespace=ALICE, records=[VectorRecord("kept", unit(1), {"t": "kept"})])
    secret = "Xiomara-secret-words"
    store.put(
        namespace=ALICE, records=[VectorRecord("gone", unit(0, 1), {"t": secret})]
    )
    store.delete(namespace=ALICE, keys=["gone"])

    store.compact()

    files = [p for p in path.parent.iterdir() if p.name.startswith(path.name)]
    assert files
    for file in files:
        assert secret.encode() not in file.read_bytes(), file.name
    assert [r.key for r in store.get(namespace=ALICE, keys=["kept", "gone"])] == [
        "kept"
    ]
