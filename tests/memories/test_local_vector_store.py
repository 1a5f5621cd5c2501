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
    # Vectors are held in half precision: a cosine is within 2**-11 of exact.
    assert hits[0].score == pytest.approx(float(unit(1, 0.1) @ unit(1, 0)), abs=2**-11)


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


def exact_top(vectors: dict[str, np.ndarray], query: np.ndarray, k: int) -> list:
    scores = {
        key: float(v @ query / np.linalg.norm(v) / np.linalg.norm(query))
        for key, v in vectors.items()
    }
    return sorted(scores, key=lambda key: (-scores[key], key))[:k]


def test_a_process_sees_the_writes_of_another_at_its_next_query(path):
    """Each store object keeps its own copy in memory, as a process does."""
    reader, writer = open_store(path), open_store(path)
    writer.put(
        namespace=ALICE,
        records=[VectorRecord("old", unit(1, 0)), VectorRecord("moved", unit(1, 0.2))],
    )
    assert [h.key for h in reader.query(namespace=ALICE, vector=unit(1), top_k=5)] == [
        "old",
        "moved",
    ]

    writer.put(namespace=ALICE, records=[VectorRecord("new", unit(1, 0.1))])
    writer.delete(namespace=ALICE, keys=["old"])
    writer.put(namespace=ALICE, records=[VectorRecord("moved", unit(0, 1))])
    writer.delete(namespace=ALICE, keys=["gone-and-back"])
    writer.put(namespace=ALICE, records=[VectorRecord("gone-and-back", unit(1, 0.3))])

    hits = reader.query(namespace=ALICE, vector=unit(1), top_k=5)
    assert [h.key for h in hits] == ["new", "gone-and-back", "moved"]
    assert hits[2].score == pytest.approx(0.0, abs=1e-6)
    assert reader.query(namespace=BOB, vector=unit(1), top_k=5) == []


def test_deleted_vectors_are_never_returned_even_when_fewer_remain_than_asked(path):
    rng = np.random.default_rng(7)
    store, writer = open_store(path), open_store(path)
    vectors = {f"k{i:03}": rng.standard_normal(DIMENSION) for i in range(600)}
    writer.put(
        namespace=ALICE,
        records=[VectorRecord(key, vector) for key, vector in vectors.items()],
    )
    query = rng.standard_normal(DIMENSION)
    assert [h.key for h in store.query(namespace=ALICE, vector=query, top_k=10)] == (
        exact_top(vectors, query, 10)
    )
    removed = list(vectors)[::2] + list(vectors)[1:150:2]
    writer.delete(namespace=ALICE, keys=removed)
    for key in removed:
        del vectors[key]

    hits = store.query(namespace=ALICE, vector=query, top_k=1000)

    assert [h.key for h in hits] == exact_top(vectors, query, 1000)
    assert len(hits) == 225


def test_replaced_vectors_are_found_by_their_latest_value_only(path):
    rng = np.random.default_rng(11)
    store, writer = open_store(path), open_store(path)
    vectors = {f"k{i:03}": rng.standard_normal(DIMENSION) for i in range(100)}
    writer.put(
        namespace=ALICE,
        records=[VectorRecord(key, vector) for key, vector in vectors.items()],
    )
    query = rng.standard_normal(DIMENSION)
    store.query(namespace=ALICE, vector=query, top_k=1)
    # Each round replaces 40 of the 100 vectors: the copy in memory keeps old
    # rows as dead until they are a quarter, then drops them.
    for round_ in range(5):
        keys = list(vectors)[::2][:40]
        replaced = {key: rng.standard_normal(DIMENSION) for key in keys}
        writer.put(
            namespace=ALICE,
            records=[VectorRecord(key, vector) for key, vector in replaced.items()],
        )
        vectors.update(replaced)

        hits = store.query(namespace=ALICE, vector=query, top_k=1000)

        assert [h.key for h in hits] == exact_top(vectors, query, 1000), round_
        nearest = store.query(namespace=ALICE, vector=vectors["k000"], top_k=1)
        assert nearest[0].key == "k000"
        assert nearest[0].score == pytest.approx(1.0, abs=2**-11)


@pytest.mark.parametrize("cache_bytes", [0, 3 * DIMENSION * 4 + 300])
def test_answers_are_the_same_whatever_the_memory_budget(path, cache_bytes):
    store = open_store(path)
    small = LocalVectorStore(
        path=path, dimension=DIMENSION, model_name="test-model", cache_bytes=cache_bytes
    )
    for namespace, base in ((ALICE, 1), (BOB, 2), (OTHER_TENANT_ALICE, 3)):
        store.put(
            namespace=namespace,
            records=[VectorRecord(f"{base}-{i}", unit(1, i, base)) for i in range(3)],
        )
    for _ in range(2):
        for namespace in (ALICE, BOB, OTHER_TENANT_ALICE, ALICE):
            expected = store.query(namespace=namespace, vector=unit(1, 1), top_k=3)
            assert small.query(namespace=namespace, vector=unit(1, 1), top_k=3) == (
                expected
            )
        store.delete(namespace=BOB, keys=["2-1"])
        store.put(namespace=ALICE, records=[VectorRecord("1-9", unit(1, 1))])
    assert small.query(namespace=ALICE, vector=unit(1, 1), top_k=1)[0].key == "1-9"


def test_a_copy_that_missed_removals_no_longer_kept_reads_the_user_again(
    path, monkeypatch
):
    import memories.vectorstores.local as local

    reader, writer = open_store(path), open_store(path)
    writer.put(
        namespace=ALICE,
        records=[VectorRecord(k, unit(1, i)) for i, k in enumerate("abc")],
    )
    assert len(reader.query(namespace=ALICE, vector=unit(1), top_k=5)) == 3
    writer.delete(namespace=ALICE, keys=["a"])
    later = local.time.time() + local.REMOVALS_KEPT_SECONDS + 1
    monkeypatch.setattr(local.time, "time", lambda: later)
    # This deletion drops the record of the first one.
    writer.delete(namespace=ALICE, keys=["b"])

    assert [h.key for h in reader.query(namespace=ALICE, vector=unit(1), top_k=5)] == [
        "c"
    ]


def test_a_file_of_the_previous_layout_is_brought_up_to_date_when_opened(path):
    import sqlite3

    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE store_info (name TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE vectors (
            tenant_id INTEGER NOT NULL, user_id TEXT NOT NULL, key TEXT NOT NULL,
            embedding BLOB NOT NULL, metadata TEXT NOT NULL,
            PRIMARY KEY (tenant_id, user_id, key)
        ) WITHOUT ROWID;
        INSERT INTO store_info VALUES ('dimension', '8'), ('model', 'test-model');
        """
    )
    old.executemany(
        "INSERT INTO vectors VALUES (1, 'alice', ?, ?, ?)",
        [
            ("near", unit(1, 0.1).astype("<f4").tobytes(), '{"n": 1}'),
            ("far", unit(0, 1).astype("<f4").tobytes(), "{}"),
        ],
    )
    old.commit()
    old.close()

    store, other = open_store(path), open_store(path)

    assert [h.key for h in store.query(namespace=ALICE, vector=unit(1), top_k=2)] == [
        "near",
        "far",
    ]
    other.delete(namespace=ALICE, keys=["near"])
    other.put(namespace=ALICE, records=[VectorRecord("new", unit(1))])
    assert [h.key for h in store.query(namespace=ALICE, vector=unit(1), top_k=2)] == [
        "new",
        "far",
    ]
    assert store.get(namespace=ALICE, keys=["far"])[0].metadata == {}


# -- queries above a score, answered from the last scan when provably complete --
WIDE = 64  # enough dimensions for random vectors to crowd, as real ones do


def at_cosine(rng, towards: np.ndarray, cosine: float) -> np.ndarray:
    """A unit vector at exactly `cosine` to the unit vector `towards`."""
    other = rng.standard_normal(len(towards))
    other -= (other @ towards) * towards
    other /= np.linalg.norm(other)
    return (cosine * towards + np.sqrt(1 - cosine**2) * other).astype(np.float32)


def random_unit(rng, dimension=WIDE) -> np.ndarray:
    vector = rng.standard_normal(dimension).astype(np.float32)
    return vector / np.linalg.norm(vector)


def above(store, vector, min_score, top_k=8):
    return [
        (hit.key, round(hit.score, 4))
        for hit in store.query_many(
            namespace=ALICE, vectors=[vector], top_k=top_k, min_score=min_score
        )[0]
    ]


def test_a_query_above_a_score_finds_what_a_full_comparison_finds_after_a_scan(path):
    rng = np.random.default_rng(21)
    store = open_store(path, dimension=WIDE)
    message = random_unit(rng)
    # Close to the message: the fact a message states is close to it.
    near_fact = at_cosine(rng, message, np.cos(np.radians(10)))
    # Far from it, beyond a crowd that fills the message's top 100.
    far_fact = at_cosine(rng, message, np.cos(np.radians(40)))
    records = [VectorRecord(f"noise-{i}", random_unit(rng)) for i in range(2000)]
    records += [
        VectorRecord(f"crowd-{i}", at_cosine(rng, message, 0.8)) for i in range(150)
    ]
    records += [
        VectorRecord("twin-of-near", at_cosine(rng, near_fact, 0.95)),
        VectorRecord("twin-of-far", at_cosine(rng, far_fact, 0.95)),
    ]
    store.put(namespace=ALICE, records=records)

    for fact, twin in ((near_fact, "twin-of-near"), (far_fact, "twin-of-far")):
        # The recall's scan, then the near-duplicate check of the message's fact.
        store.query(namespace=ALICE, vector=message, top_k=100)
        found = above(store, fact, 0.9)
        # A store whose copy is new compares every vector.
        fresh = above(open_store(path, dimension=WIDE), fact, 0.9)

        assert found == fresh
        assert [key for key, _ in found] == [twin]
        assert found[0][1] == pytest.approx(0.95, abs=2**-10)


def test_a_write_after_the_scan_is_seen_by_a_query_above_a_score(path):
    rng = np.random.default_rng(22)
    store, writer = open_store(path, dimension=WIDE), open_store(path, dimension=WIDE)
    message = random_unit(rng)
    fact = at_cosine(rng, message, np.cos(np.radians(5)))
    writer.put(
        namespace=ALICE,
        records=[VectorRecord(f"noise-{i}", random_unit(rng)) for i in range(500)]
        + [VectorRecord("old-twin", at_cosine(rng, fact, 0.96))],
    )
    store.query(namespace=ALICE, vector=message, top_k=100)
    assert [key for key, _ in above(store, fact, 0.9)] == ["old-twin"]
    # Another process replaces the near-duplicate after the scan.
    writer.put(
        namespace=ALICE, records=[VectorRecord("twin", at_cosine(rng, fact, 0.97))]
    )
    writer.delete(namespace=ALICE, keys=["old-twin"])

    assert [key for key, _ in above(store, fact, 0.9)] == ["twin"]


def on_far_side(message: np.ndarray, fact: np.ndarray, degrees: float) -> np.ndarray:
    """The unit vector `degrees` from `fact`, in the plane of `message` and
    `fact`, turned away from `message`: as far from the message as a vector
    that close to the fact can be."""
    across = fact - (fact @ message) * message
    across /= np.linalg.norm(across)
    angle = np.arccos(np.clip(fact @ message, -1, 1)) + np.radians(degrees)
    return (np.cos(angle) * message + np.sin(angle) * across).astype(np.float32)


def test_queries_above_a_score_agree_with_a_full_comparison_at_any_angle(path):
    rng = np.random.default_rng(23)
    store = open_store(path, dimension=WIDE)
    store.put(
        namespace=ALICE,
        records=[VectorRecord(f"noise-{i}", random_unit(rng)) for i in range(1500)],
    )
    for trial in range(60):
        message = random_unit(rng)
        fact = at_cosine(rng, message, float(np.cos(np.radians(rng.uniform(0, 85)))))
        degrees = float(rng.uniform(5, 40))
        twin = on_far_side(message, fact, degrees)
        store.put(namespace=ALICE, records=[VectorRecord(f"t{trial}", twin)])
        store.query(namespace=ALICE, vector=message, top_k=100)
        just_below = float(np.cos(np.radians(degrees))) - 0.005
        for min_score in (just_below, 0.6, 0.92):
            # A store opened now has scanned nothing: it compares every vector.
            fresh = open_store(path, dimension=WIDE)
            assert above(store, fact, min_score) == above(fresh, fact, min_score), (
                trial,
                degrees,
                min_score,
            )
