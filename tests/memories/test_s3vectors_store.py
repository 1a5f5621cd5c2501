"""Amazon S3 Vectors as the service's store: batching, limits, modes, and the API."""

import logging
from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from memories.models import Memory, VectorOperation
from memories.vectorstores import Namespace, reset_vector_store
from memories.vectorstores.base import VectorRecord
from memories.vectorstores.s3vectors import S3VectorsLimitError, S3VectorsStore
from tests.fakes.s3vectors import fake_s3vectors
from tests.helpers import post_forget, post_message

BUCKET = "ltm-test"
DIMENSION = 8
ALICE = Namespace(tenant_id=1, user_id="alice")


def unit(rng) -> np.ndarray:
    vector = rng.standard_normal(DIMENSION).astype(np.float32)
    return vector / np.linalg.norm(vector)


@pytest.fixture
def s3():
    with fake_s3vectors() as fake:
        fake.client().create_vector_bucket(vectorBucketName=BUCKET)
        fake.reset_calls()
        yield fake


def open_store(**options) -> S3VectorsStore:
    return S3VectorsStore(
        bucket=BUCKET,
        dimension=options.pop("dimension", DIMENSION),
        model_name=options.pop("model_name", "test-model"),
        region="us-east-1",
        **options,
    )


def records(count: int, rng, **metadata) -> list[VectorRecord]:
    return [
        VectorRecord(f"k{i}", unit(rng), {"memory_id": i, **metadata})
        for i in range(count)
    ]


def test_each_operation_makes_only_the_calls_its_limits_require(s3):
    rng = np.random.default_rng(1)
    store = open_store()
    store.put(namespace=ALICE, records=records(1, rng))
    s3.reset_calls()  # the index is created and checked once, on first use

    store.put(namespace=ALICE, records=records(1203, rng))
    store.get(namespace=ALICE, keys=[f"k{i}" for i in range(250)])
    store.query(namespace=ALICE, vector=unit(rng), top_k=10)
    store.hybrid_query(namespace=ALICE, vector=unit(rng), text="k1", top_k=10)
    store.delete(namespace=ALICE, keys=[f"k{i}" for i in range(1001)])

    assert dict(s3.calls) == {
        "PutVectors": 3,
        "GetVectors": 3,
        "QueryVectors": 2,
        "DeleteVectors": 3,
    }


def test_a_new_index_is_made_for_the_embedder(s3):
    store = open_store()
    store.put(namespace=ALICE, records=records(1, np.random.default_rng(2)))

    index = s3.client().get_index(vectorBucketName=BUCKET, indexName="ltm-t1")["index"]

    assert index["dimension"] == DIMENSION
    assert index["distanceMetric"] == "cosine"
    configuration = index["metadataConfiguration"]
    assert set(configuration["nonFilterableMetadataKeys"]) == {"text", "keywords"}
    assert [c["metadataKey"] for c in configuration["textSearchConfigurations"]] == [
        "keywords"
    ]
    tags = s3.client().list_tags_for_resource(resourceArn=index["indexArn"])["tags"]
    assert tags["ltm-embedding-model"] == "test-model"


@pytest.mark.parametrize(
    "metadata",
    [
        {"speaker": "x" * 3000},  # filterable keys over 2 KB
        {"text": "y" * 41_000},  # over 40 KB in all
        {f"key{i}": i for i in range(60)},  # over 50 keys
    ],
)
def test_a_record_over_the_limits_is_refused_before_any_call(s3, metadata):
    rng = np.random.default_rng(3)
    store = open_store()
    batch = records(3, rng) + [VectorRecord("too-big", unit(rng), metadata)]

    with pytest.raises(S3VectorsLimitError):
        store.put(namespace=ALICE, records=batch)

    assert sum(s3.calls.values()) == 0


def test_a_long_keyword_document_is_shortened_to_fit(s3):
    rng = np.random.default_rng(4)
    store = open_store()
    keywords = "word " * 12_000  # 60 KB of derived keyword text
    store.put(
        namespace=ALICE,
        records=[VectorRecord("k", unit(rng), {"text": "short", "keywords": keywords})],
    )

    (record,) = store.get(namespace=ALICE, keys=["k"])

    assert record.metadata["text"] == "short"
    assert 0 < len(record.metadata["keywords"]) < 40 * 1024


def test_throttling_is_retried_by_botocore(s3):
    rng = np.random.default_rng(5)
    store = open_store()
    store.put(namespace=ALICE, records=records(1, rng))
    s3.reset_calls()
    s3.fail_next("PutVectors", code="ThrottlingException", status=429)

    store.put(namespace=ALICE, records=records(2, rng))

    assert s3.calls["PutVectors"] == 2
    assert store.count(namespace=ALICE) == 2


def test_a_classic_index_falls_back_to_vector_search_and_says_so(s3, caplog):
    rng = np.random.default_rng(6)
    store = open_store()
    store.put(namespace=ALICE, records=records(5, rng, keywords="plain words"))
    s3.client().update_index_mode(
        vectorBucketName=BUCKET, indexName="ltm-t1", indexMode="CLASSIC"
    )
    store = open_store()  # a new process sees the index's mode afresh
    query = unit(rng)

    with caplog.at_level(logging.WARNING):
        hybrid = store.hybrid_query(
            namespace=ALICE, vector=query, text="plain", top_k=3
        )
        store.hybrid_query(namespace=ALICE, vector=query, text="plain", top_k=3)

    assert [hit.key for hit in hybrid] == [
        hit.key for hit in store.query(namespace=ALICE, vector=query, top_k=3)
    ]
    warnings = [r for r in caplog.records if "CLASSIC" in r.getMessage()]
    assert len(warnings) == 1


def test_setup_vector_store_creates_and_checks_every_tenants_index(
    s3, settings, tenant_a, tenant_b
):
    configure(settings)
    settings.LTM_S3VECTORS_CREATE_INDEXES = False

    with pytest.raises(CommandError, match="missing"):
        call_command(
            "setup_vector_store", "--check", stdout=StringIO(), stderr=StringIO()
        )
    out = StringIO()
    call_command("setup_vector_store", stdout=out)
    call_command("setup_vector_store", "--check", stdout=out)

    names = {
        index["indexName"]
        for index in s3.client().list_indexes(vectorBucketName=BUCKET)["indexes"]
    }
    assert names == {f"ltm-t{tenant_a.pk}", f"ltm-t{tenant_b.pk}"}
    assert "ENHANCED" in out.getvalue()


def test_an_index_made_for_another_model_stops_the_start(s3, settings, tenant_a):
    configure(settings)
    call_command("setup_vector_store", stdout=StringIO())
    settings.LTM_LOCAL_EMBEDDING_QUANTIZE = False  # another model name
    from memories.providers.embeddings import reset_embedder

    reset_embedder()
    reset_vector_store()
    try:
        with pytest.raises(CommandError, match="fp32"):
            call_command("setup_vector_store", "--check", stdout=StringIO())
    finally:
        reset_embedder()


# -- the service on S3 Vectors -------------------------------------------------------
def configure(settings) -> None:
    settings.LTM_VECTOR_STORE = "s3vectors"
    settings.LTM_S3VECTORS_BUCKET = BUCKET
    settings.LTM_S3VECTORS_REGION = "us-east-1"
    settings.LTM_S3VECTORS_MAX_ATTEMPTS = 2
    reset_vector_store()


@pytest.fixture
def on_s3(s3, settings):
    configure(settings)
    yield s3
    reset_vector_store()


def index_keys(s3, tenant, user_id="u1") -> set[str]:
    """The user's keys in the tenant's index, read page by page."""
    keys, params = set(), {}
    while True:
        response = s3.client().list_vectors(
            vectorBucketName=BUCKET,
            indexName=f"ltm-t{tenant.pk}",
            returnMetadata=True,
            **params,
        )
        keys |= {
            vector["key"].split("/", 1)[1]
            for vector in response["vectors"]
            if vector["metadata"]["user_id"] == user_id
        }
        if not response.get("nextToken"):
            return keys
        params = {"nextToken": response["nextToken"]}


def active_keys(tenant, user_id="u1") -> set[str]:
    return {
        str(key)
        for key in Memory.objects.filter(
            tenant=tenant, user_id=user_id, status="active"
        ).values_list("vector_key", flat=True)
    }


@pytest.mark.django_db(transaction=True)
def test_remember_recall_and_forget_through_the_api(on_s3, client_a, tenant_a):
    response = post_message(
        client_a, "u1", "I moved to Lisbon last month and I am allergic to peanuts."
    )
    assert response.status_code == 200
    assert index_keys(on_s3, tenant_a) == active_keys(tenant_a)
    # Two facts and the message's episode.
    assert len(active_keys(tenant_a)) == 3

    search = client_a.post(
        "/api/v1/memories/search",
        {"userId": "u1", "query": "peanuts", "topK": 3},
        format="json",
    )
    assert "peanuts" in search.json()["hits"][0]["text"]
    assert on_s3.calls["QueryVectors"] >= 1

    post_forget(client_a, "u1", "Forget that I am allergic to peanuts.")

    # The fact is forgotten with the episode of its message: only Lisbon is left.
    assert index_keys(on_s3, tenant_a) == active_keys(tenant_a)
    assert len(active_keys(tenant_a)) == 1
    assert Memory.objects.get(status="active").kind == "fact"
    listed = on_s3.client().list_vectors(
        vectorBucketName=BUCKET, indexName=f"ltm-t{tenant_a.pk}", returnMetadata=True
    )
    assert "peanut" not in str(listed["vectors"]).lower()


def test_another_tenant_finds_nothing_in_s3(on_s3, client_a, client_b):
    post_message(client_a, "u1", "I am allergic to peanuts.")

    search = client_b.post(
        "/api/v1/memories/search",
        {"userId": "u1", "query": "peanuts allergic", "topK": 5},
        format="json",
    )

    assert search.status_code == 200
    assert search.json()["hits"] == []


@pytest.mark.django_db(transaction=True)
def test_a_failed_put_stays_in_the_outbox_until_sync_vectors(on_s3, client_a, tenant_a):
    # As many failures as botocore makes attempts: the write fails after commit.
    on_s3.fail_next("PutVectors", times=2)

    response = post_message(client_a, "u1", "I am allergic to peanuts.")

    assert response.status_code == 200
    assert index_keys(on_s3, tenant_a) == set()
    # The fact and the message's episode.
    assert VectorOperation.objects.filter(applied_at__isnull=True).count() == 2

    call_command("sync_vectors", stdout=StringIO())

    assert index_keys(on_s3, tenant_a) == active_keys(tenant_a) != set()
    assert VectorOperation.objects.filter(applied_at__isnull=True).count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_message_makes_one_query_and_one_batched_put(on_s3, client_a):
    post_message(client_a, "u1", "My name is Ada.")
    on_s3.reset_calls()

    post_message(
        client_a, "u1", "I moved to Lisbon last month and I am allergic to peanuts."
    )

    # Recall is one hybrid query; near-duplicates are found in the database.
    assert on_s3.call_log == ["QueryVectors", "PutVectors"]


@pytest.mark.django_db(transaction=True)
def test_a_near_duplicate_is_still_found_without_querying_s3(on_s3, client_a):
    post_message(client_a, "u1", "I am allergic to peanuts.")
    on_s3.reset_calls()

    response = post_message(client_a, "u1", "I am allergic to peanuts!")

    assert response.json()["added"] == []
    # The fact, and the first message's episode: the same words again are one
    # more source of it, not a second episode.
    assert Memory.objects.filter(status="active", kind="fact").count() == 1
    assert Memory.objects.filter(status="active", kind="episode").count() == 1
    assert on_s3.calls["QueryVectors"] == 1  # the recall, nothing more


@pytest.mark.django_db(transaction=True)
def test_a_large_import_is_written_in_batches_of_500(
    on_s3, client_a, tenant_a, settings
):
    # Only exact repeats count as duplicates here: this is about batching.
    settings.LTM_DUPLICATE_SIMILARITY = 1.01
    messages = [
        {
            "text": f"I adopted a cat named Kit{i}. I planted {i} roses. "
            f"I visited Town{i} by train.",
            "sentAt": f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z",
        }
        for i in range(500)
    ]
    on_s3.reset_calls()

    response = client_a.post(
        "/api/v1/memories/import", {"userId": "u1", "messages": messages}, format="json"
    )

    assert response.status_code == 200, response.content
    stored = len(active_keys(tenant_a))
    assert stored > 1000
    assert on_s3.calls["PutVectors"] == -(-stored // 500)
    assert VectorOperation.objects.filter(applied_at__isnull=True).count() == 0
    assert index_keys(on_s3, tenant_a) == active_keys(tenant_a)


@pytest.mark.django_db(transaction=True)
def test_reconcile_deletes_foreign_and_damaged_vectors_in_s3(on_s3, client_a, tenant_a):
    post_message(client_a, "u1", "I am allergic to peanuts.")
    client = on_s3.client()
    index = f"ltm-t{tenant_a.pk}"
    vector = {"float32": [0.1] * 384}
    client.put_vectors(
        vectorBucketName=BUCKET,
        indexName=index,
        vectors=[
            # Written by something else: no user prefix, no user in metadata.
            {"key": "foreign", "data": vector, "metadata": {"note": "x"}},
            # A memory-shaped key whose metadata names another user.
            {
                "key": "0" * 24 + "/9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d",
                "data": vector,
                "metadata": {"user_id": "someone-else"},
            },
        ],
    )
    out = StringIO()

    with pytest.raises(CommandError):
        call_command("reconcile_vectors", "--no-progress", stdout=out)
    call_command("reconcile_vectors", "--fix", "--no-progress", stdout=out)
    call_command("reconcile_vectors", "--no-progress", stdout=out)

    remaining = client.list_vectors(vectorBucketName=BUCKET, indexName=index)
    assert {v["key"].split("/", 1)[-1] for v in remaining["vectors"]} == active_keys(
        tenant_a
    )
