"""Reconciliation finds where the vector index and the audit table disagree, and
repairs it."""

import uuid
from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from memories.models import Memory, VectorOperation
from memories.outbox import vector_metadata as _vector_metadata
from memories.reconcile import metadata_drift, vectors_reconcile
from memories.vectorstores import Namespace, VectorRecord, use_vector_store
from tests.helpers import post_forget, post_message
from tests.memories.test_consistency import FaultyStore

# The outbox writes vectors after commit.
pytestmark = pytest.mark.django_db(transaction=True)


def reconcile(*args: str) -> tuple[int, str]:
    """Run the command; its exit status and everything it said."""
    out = StringIO()
    try:
        call_command("reconcile_vectors", *args, "--no-progress", stdout=out)
    except CommandError as error:
        return error.returncode, f"{out.getvalue()}{error}"
    return 0, out.getvalue()


def for_tenant(report, tenant):
    (found,) = [each for each in report.tenants if each.tenant_id == tenant.pk]
    return found


def namespace_of(tenant, user_id="u1") -> Namespace:
    return Namespace(tenant_id=tenant.pk, user_id=user_id)


def active_memories(tenant, user_id="u1", **kind) -> list[Memory]:
    """Active memories of a user: facts and episodes, or `kind="fact"` only."""
    return list(
        Memory.objects.filter(tenant=tenant, user_id=user_id, status="active", **kind)
    )


def stored_record(store, memory) -> VectorRecord:
    (record,) = store.get(
        namespace=namespace_of(memory.tenant, memory.user_id),
        keys=[str(memory.vector_key)],
    )
    return record


def random_vector(store) -> np.ndarray:
    vector = np.random.default_rng(7).normal(size=store.dimension)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def assert_index_matches_rows(store, tenant, user_id="u1"):
    memories = active_memories(tenant, user_id)
    namespace = namespace_of(tenant, user_id)
    assert set(store.list_keys(namespace=namespace)) == {
        str(memory.vector_key) for memory in memories
    }
    for memory in memories:
        assert stored_record(store, memory).metadata == _vector_metadata(memory)


@pytest.fixture
def remembered(client_a, tenant_a, vector_store):
    """Tenant A's user u1 with two facts (and the two episodes of the messages
    they came from), index and table in agreement. Returns the facts."""
    post_message(client_a, "u1", "I am allergic to peanuts.")
    post_message(client_a, "u1", "I work as a baker.")
    assert len(active_memories(tenant_a, kind="fact")) == 2
    assert len(active_memories(tenant_a, kind="episode")) == 2
    return active_memories(tenant_a, kind="fact")


# --- the problems, each made directly in the store -------------------------
def orphan_vector(store, tenant, memories, client=None):
    store.put(
        namespace=namespace_of(tenant),
        records=[VectorRecord(str(uuid.uuid4()), random_vector(store), {})],
    )


def missing_vector(store, tenant, memories, client=None):
    store.delete(namespace=namespace_of(tenant), keys=[str(memories[0].vector_key)])


def drifted_metadata(store, tenant, memories, client=None):
    record = stored_record(store, memories[0])
    altered = {**record.metadata, "text": "I am allergic to cats.", "content_hash": "0"}
    store.put(
        namespace=namespace_of(tenant),
        records=[VectorRecord(record.key, record.vector, altered)],
    )


def vector_in_another_users_namespace(store, tenant, memories, client=None):
    record = stored_record(store, memories[0])
    store.delete(namespace=namespace_of(tenant), keys=[record.key])
    store.put(namespace=namespace_of(tenant, "u2"), records=[record])


def vector_left_by_a_forgotten_memory(store, tenant, memories, client=None):
    allergy = next(memory for memory in memories if "peanuts" in memory.text)
    record = stored_record(store, allergy)
    post_forget(client, "u1", "Forget that I am allergic to peanuts.")
    allergy.refresh_from_db()
    assert allergy.status == "deleted"
    store.put(namespace=namespace_of(tenant), records=[record])


PROBLEMS = {
    # name: (how it is made, (orphans, missing, drift))
    "orphan": (orphan_vector, (1, 0, 0)),
    "missing": (missing_vector, (0, 1, 0)),
    "drift": (drifted_metadata, (0, 0, 1)),
    "wrong namespace": (vector_in_another_users_namespace, (1, 1, 0)),
    "tombstoned": (vector_left_by_a_forgotten_memory, (1, 0, 0)),
}


@pytest.fixture(params=list(PROBLEMS))
def problem(request, remembered, tenant_a, client_a, vector_store):
    make, expected = PROBLEMS[request.param]
    make(vector_store, tenant_a, remembered, client_a)
    return expected


# --- the check -------------------------------------------------------------
@pytest.mark.usefixtures("remembered")
def test_a_clean_index_reports_nothing_and_exits_0(client_b):
    post_message(client_b, "u9", "I live in Lisbon.")
    status, output = reconcile()
    assert status == 0
    assert "tenant-a (id" in output
    assert "orphans 0, missing 0, drift 0; outbox pending 0" in output
    # Three facts and the episodes of their three messages.
    assert "Total: 6 vector(s) listed, 6 row(s) checked, 0 difference(s)" in output
    assert "The vector index matches." in output


def test_each_kind_of_difference_is_found_counted_and_exits_1(problem, tenant_a):
    report = for_tenant(vectors_reconcile(), tenant_a)
    assert (report.orphans, report.missing, report.drift) == problem

    status, output = reconcile()
    orphans, missing, drift = problem
    assert status == 1
    assert f"orphans {orphans}, missing {missing}, drift {drift}" in output
    assert f"{sum(problem)} difference(s) between the vector index" in output


def test_fix_repairs_each_kind_and_a_second_run_is_clean(
    problem, tenant_a, vector_store
):
    status, output = reconcile("--fix")
    assert status == 0, output
    assert f"Repaired {sum(problem)}; the vector index matches." in output
    assert "Re-check: " in output
    assert reconcile()[0] == 0
    assert_index_matches_rows(vector_store, tenant_a)
    assert list(vector_store.list_keys(namespace=namespace_of(tenant_a, "u2"))) == []
    assert not VectorOperation.objects.filter(applied_at__isnull=True).exists()


def test_the_examples_name_the_keys_and_why(remembered, tenant_a, vector_store):
    missing_vector(vector_store, tenant_a, remembered)
    vector_store.put(
        namespace=namespace_of(tenant_a),
        records=[VectorRecord("not-a-memory-key", random_vector(vector_store))],
    )
    drifted_metadata(vector_store, tenant_a, remembered[1:])
    status, output = reconcile()
    assert status == 1
    assert "orphan  user 'u1' key not-a-memory-key: the key is not a memory key" in (
        output
    )
    assert f"key {remembered[0].vector_key}: memory {remembered[0].pk}" in output
    assert f"key {remembered[1].vector_key}: differs: content_hash, text" in output


def test_fix_records_its_writes_in_the_outbox(remembered, tenant_a, vector_store):
    missing_vector(vector_store, tenant_a, remembered)
    before = VectorOperation.objects.filter(memory=remembered[0]).count()
    assert reconcile("--fix")[0] == 0
    assert VectorOperation.objects.filter(memory=remembered[0]).count() == before + 1
    assert not VectorOperation.objects.filter(applied_at__isnull=True).exists()


def test_tenant_limits_the_check_and_the_repair_to_one_tenant(
    remembered, tenant_a, tenant_b, client_b, vector_store
):
    post_message(client_b, "u1", "I live in Lisbon.")
    orphan_vector(vector_store, tenant_a, remembered)
    orphan_vector(vector_store, tenant_b, [])

    status, output = reconcile("--tenant", "tenant-a", "--fix")
    assert status == 0, output
    assert "tenant-b" not in output

    assert reconcile("--tenant", "tenant-a")[0] == 0
    status, output = reconcile("--tenant", "tenant-b")
    assert status == 1
    assert "tenant-b (id" in output
    assert "orphans 1, missing 0, drift 0" in output
    # Its fact, the episode of its message, and the orphan.
    assert vector_store.count(namespace=namespace_of(tenant_b)) == 3


def test_an_unknown_tenant_is_refused():
    with pytest.raises(CommandError, match="No tenant with slug 'nope'"):
        call_command("reconcile_vectors", "--tenant", "nope", stdout=StringIO())


@pytest.mark.usefixtures("remembered")
def test_vectors_of_a_tenant_the_database_does_not_know_are_orphans(vector_store):
    unknown = Namespace(tenant_id=987654, user_id="ghost")
    vector_store.put(
        namespace=unknown,
        records=[VectorRecord(str(uuid.uuid4()), random_vector(vector_store))],
    )
    status, output = reconcile()
    assert status == 1
    assert "(no such tenant) (id 987654): 1 vector(s) listed" in output

    assert reconcile("--fix")[0] == 0
    assert vector_store.count(namespace=unknown) == 0


# --- failures while repairing ----------------------------------------------
def test_a_failure_during_fix_is_reported_and_the_next_fix_completes(
    remembered, tenant_a, vector_store
):
    orphan_vector(vector_store, tenant_a, remembered)
    missing_vector(vector_store, tenant_a, remembered)
    faulty = FaultyStore(vector_store)
    faulty.failing_deletes = 1
    faulty.failing_puts = 1
    use_vector_store(faulty)

    status, output = reconcile("--fix")
    assert status == 1
    assert "1 orphan(s) deleted" not in output
    assert "0 orphan(s) deleted, 0 missing restored, 0 drifted rewritten; " in output
    assert "2 not repaired" in output
    assert "1 orphan(s) of user 'u1' not deleted: injected: delete failed" in output
    assert "1 vector(s) not rewritten: injected: put failed" in output
    assert "2 difference(s) not repaired, 2 found on re-check" in output
    assert VectorOperation.objects.filter(applied_at__isnull=True).count() == 1

    status, output = reconcile("--fix")
    assert status == 0, output
    assert "1 orphan(s) deleted, 1 missing restored" in output
    assert reconcile()[0] == 0
    assert_index_matches_rows(vector_store, tenant_a)
    # The entry left pending by the failure was applied, not duplicated.
    assert not VectorOperation.objects.filter(applied_at__isnull=True).exists()
    assert VectorOperation.objects.filter(memory=remembered[0]).count() == 2


def test_a_write_still_in_the_outbox_is_reported_as_pending(
    client_a, tenant_a, vector_store
):
    faulty = FaultyStore(vector_store)
    faulty.failing_puts = 1
    use_vector_store(faulty)
    post_message(client_a, "u1", "I am allergic to peanuts.")

    # The fact and the message's episode went in the one failed put.
    report = for_tenant(vectors_reconcile(), tenant_a)
    assert (report.missing, report.outbox_pending) == (2, 2)
    status, output = reconcile()
    assert status == 1
    assert "missing 2, drift 0; outbox pending 2" in output


# --- what counts as drift --------------------------------------------------
def test_check_vectors_compares_the_stored_values(remembered, tenant_a, vector_store):
    record = stored_record(vector_store, remembered[0])
    vector_store.put(
        namespace=namespace_of(tenant_a),
        records=[
            VectorRecord(record.key, random_vector(vector_store), record.metadata)
        ],
    )
    assert reconcile()[0] == 0

    status, output = reconcile("--check-vectors")
    assert status == 1
    assert "drift 1" in output
    assert f"key {record.key}: differs: vector" in output

    assert reconcile("--check-vectors", "--fix")[0] == 0
    np.testing.assert_array_equal(
        stored_record(vector_store, remembered[0]).vector,
        np.frombuffer(bytes(remembered[0].embedding), dtype="<f4"),
    )


def test_metadata_read_back_as_floats_or_with_extra_keys_is_not_drift(
    remembered, tenant_a, vector_store
):
    memory = remembered[0]
    expected = _vector_metadata(memory)
    as_a_remote_store_returns_it = {
        **expected,
        "memory_id": float(memory.pk),
        "tenant_id": float(memory.tenant_id),
        "added_by_the_store": "x",
    }
    assert metadata_drift(expected, as_a_remote_store_returns_it) == []
    record = stored_record(vector_store, memory)
    vector_store.put(
        namespace=namespace_of(tenant_a),
        records=[VectorRecord(record.key, record.vector, as_a_remote_store_returns_it)],
    )
    assert vectors_reconcile().is_clean


def test_a_compared_key_missing_from_the_stored_metadata_is_drift(remembered):
    expected = _vector_metadata(remembered[0])
    without_hash = {k: v for k, v in expected.items() if k != "content_hash"}
    assert metadata_drift(expected, without_hash) == ["content_hash"]
    assert metadata_drift(expected, {**expected, "memory_id": "12x"}) == ["memory_id"]


# --- scale -----------------------------------------------------------------
def test_rows_are_looked_up_a_chunk_at_a_time(
    remembered, tenant_a, vector_store, django_assert_max_num_queries
):
    vector = random_vector(vector_store)
    vector_store.put(
        namespace=namespace_of(tenant_a),
        records=[VectorRecord(str(uuid.uuid4()), vector) for _ in range(2500)],
    )
    calls = []
    # Tenants, 3 chunks of listed vectors, 2 pages of rows, the outbox count.
    with django_assert_max_num_queries(7):
        report = vectors_reconcile(progress=lambda stage, done: calls.append(stage))
    assert for_tenant(report, tenant_a).orphans == 2500
    assert calls.count("vectors") == 3
    assert calls.count("rows") == 1
