"""The S3 Vectors stand-in checked against AWS's documented behaviour.

Every call goes through a plain boto3 client, so what is checked here is what the
store will see over HTTP.
"""

import math
import os
import socket

import boto3
import numpy as np
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.s3vectors import urls as moto_s3vectors_urls

from tests.fakes.s3vectors import fake_s3vectors

BUCKET = "test-vectors"
ALL_ONES = [1.0, 1.0, 1.0]


@pytest.fixture
def fake():
    with fake_s3vectors() as handle:
        yield handle


@pytest.fixture
def client(fake):
    client = boto3.client("s3vectors", region_name="us-east-1")
    client.create_vector_bucket(vectorBucketName=BUCKET)
    return client


def create_index(client, name="memories", dimension=3, metric="cosine", **config):
    extra = {"metadataConfiguration": config} if config else {}
    client.create_index(
        vectorBucketName=BUCKET,
        indexName=name,
        dataType="float32",
        dimension=dimension,
        distanceMetric=metric,
        **extra,
    )
    return name


def put(client, index, vectors):
    """vectors: key -> (values, metadata)"""
    client.put_vectors(
        vectorBucketName=BUCKET,
        indexName=index,
        vectors=[
            {"key": key, "data": {"float32": list(values)}, "metadata": metadata}
            for key, (values, metadata) in vectors.items()
        ],
    )


def query(client, index, **params):
    return client.query_vectors(vectorBucketName=BUCKET, indexName=index, **params)


def keys_of(response):
    return [hit["key"] for hit in response["vectors"]]


def rejected(match=""):
    return pytest.raises(ClientError, match=rf"\(ValidationException\).*{match}")


def list_all(client, index, **params):
    keys, token = [], None
    while True:
        page = client.list_vectors(
            vectorBucketName=BUCKET,
            indexName=index,
            **params,
            **({"nextToken": token} if token else {}),
        )
        keys += keys_of(page)
        token = page.get("nextToken")
        if not token:
            return keys


# -- vector search ------------------------------------------------------------------


def random_vectors(count, dimension, seed):
    rng = np.random.default_rng(seed)
    return {
        f"v{number:02d}": rng.standard_normal(dimension).astype(np.float32)
        for number in range(count)
    }


def test_cosine_query_ranks_by_exact_cosine_distance(client):
    index = create_index(client, dimension=4, metric="cosine")
    vectors = random_vectors(30, 4, seed=1)
    put(client, index, {key: (value.tolist(), {}) for key, value in vectors.items()})
    probe = np.float32([0.3, -1.2, 0.5, 2.0])

    response = query(
        client,
        index,
        topK=7,
        queryVector={"float32": probe.tolist()},
        returnDistance=True,
    )

    def cosine_distance(value):
        a, b = value.astype(np.float64), probe.astype(np.float64)
        return 1 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b))

    expected = sorted((cosine_distance(value), key) for key, value in vectors.items())
    assert keys_of(response) == [key for _, key in expected[:7]]
    distances = [hit["distance"] for hit in response["vectors"]]
    assert distances == pytest.approx([d for d, _ in expected[:7]], abs=1e-12)
    assert response["distanceMetric"] == "cosine"


def test_euclidean_query_ranks_by_l2_distance_and_breaks_ties_by_key(client):
    index = create_index(client, dimension=2, metric="euclidean")
    put(
        client,
        index,
        {
            "far": ([10.0, 0.0], {}),
            "tie-b": ([0.0, 3.0], {}),
            "tie-a": ([3.0, 0.0], {}),
            "near": ([1.0, 1.0], {}),
        },
    )

    response = query(
        client, index, topK=4, queryVector={"float32": [0.0, 0.0]}, returnDistance=True
    )

    assert keys_of(response) == ["near", "tie-a", "tie-b", "far"]
    distances = [hit["distance"] for hit in response["vectors"]]
    assert distances == pytest.approx([math.sqrt(2), 3.0, 3.0, 10.0])
    assert response["distanceMetric"] == "euclidean"


def test_query_returns_distance_and_metadata_only_on_request(client):
    index = create_index(client)
    put(client, index, {"a": (ALL_ONES, {"kind": "fact"})})

    bare = query(client, index, topK=1, queryVector={"float32": ALL_ONES})
    full = query(
        client,
        index,
        topK=1,
        queryVector={"float32": ALL_ONES},
        returnDistance=True,
        returnMetadata=True,
    )

    assert bare["vectors"] == [{"key": "a"}]
    assert full["vectors"][0]["metadata"] == {"kind": "fact"}
    assert full["vectors"][0]["distance"] == pytest.approx(0.0, abs=1e-7)


def test_stored_values_are_float32(client):
    index = create_index(client)
    put(client, index, {"a": ([0.1, 0.2, 1e-3], {})})

    stored = client.get_vectors(
        vectorBucketName=BUCKET, indexName=index, keys=["a"], returnData=True
    )["vectors"][0]["data"]["float32"]

    assert stored == np.float32([0.1, 0.2, 1e-3]).tolist()
    assert stored != [0.1, 0.2, 1e-3]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"topK": 3, "queryVector": {"float32": [1.0, 0.0]}}, "length 3"),
        ({"topK": 101, "queryVector": {"float32": ALL_ONES}}, "topK"),
        ({"topK": 3}, "queryVector, queryTexts or both"),
        ({"topK": 3, "queryVector": {"float32": [1.0, math.inf, 0.0]}}, "finite"),
    ],
)
def test_query_rejects_bad_requests(client, params, message):
    index = create_index(client)

    with rejected(message):
        query(client, index, **params)


# -- metadata filters ---------------------------------------------------------------

FILTER_DATA = {
    "doc": {"genre": "documentary", "year": 2019, "tags": ["nature", "ocean"]},
    "drama": {"genre": "drama", "year": 2021, "tags": ["family"], "public": False},
    "comedy": {"genre": "comedy", "year": 2023, "rating": 1, "public": True},
    "untagged": {"year": 2020},
}


@pytest.fixture
def filter_index(client):
    index = create_index(client)
    put(client, index, {key: (ALL_ONES, meta) for key, meta in FILTER_DATA.items()})
    return index


def filtered(client, index, where):
    response = query(
        client, index, topK=10, queryVector={"float32": ALL_ONES}, filter=where
    )
    return set(keys_of(response))


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"genre": "drama"}, {"drama"}),
        ({"genre": {"$eq": "comedy"}}, {"comedy"}),
        ({"tags": "ocean"}, {"doc"}),  # any element of an array matches
        ({"tags": {"$eq": "family"}}, {"drama"}),
        ({"genre": {"$ne": "drama"}}, {"doc", "comedy"}),  # "untagged" has no genre
        ({"tags": {"$ne": "ocean"}}, {"drama"}),
        ({"year": {"$gt": 2020}}, {"drama", "comedy"}),
        ({"year": {"$gte": 2020}}, {"drama", "comedy", "untagged"}),
        ({"year": {"$lt": 2020}}, {"doc"}),
        ({"year": {"$lte": 2020}}, {"doc", "untagged"}),
        ({"year": {"$gte": 2020, "$lt": 2023}}, {"drama", "untagged"}),
        ({"genre": {"$in": ["drama", "comedy"]}}, {"drama", "comedy"}),
        ({"tags": {"$in": ["family", "ocean"]}}, {"doc", "drama"}),
        ({"genre": {"$nin": ["drama", "comedy"]}}, {"doc"}),
        ({"tags": {"$exists": True}}, {"doc", "drama"}),
        ({"tags": {"$exists": False}}, {"comedy", "untagged"}),
        ({"genre": "drama", "year": 2021}, {"drama"}),
        ({"genre": "drama", "year": 2020}, set()),
        (
            {"$and": [{"year": {"$gte": 2020}}, {"genre": {"$exists": True}}]},
            {"drama", "comedy"},
        ),
        ({"$or": [{"genre": "documentary"}, {"year": 2020}]}, {"doc", "untagged"}),
        (
            {
                "$or": [
                    {"$and": [{"year": {"$gt": 2018}}, {"public": False}]},
                    {"rating": {"$in": [1, 2]}},
                ]
            },
            {"drama", "comedy"},
        ),
        ({"public": True}, {"comedy"}),
        ({"rating": True}, set()),  # booleans are not numbers
        ({"rating": 1.0}, {"comedy"}),
        ({"year": "2019"}, set()),  # nor are strings
    ],
)
def test_filter_operators(client, filter_index, where, expected):
    assert filtered(client, filter_index, where) == expected


def test_negations_can_be_told_to_match_vectors_lacking_the_key(
    client, fake, filter_index
):
    fake.negation_matches_missing_keys = True

    assert filtered(client, filter_index, {"genre": {"$ne": "drama"}}) == {
        "doc",
        "comedy",
        "untagged",
    }
    assert filtered(client, filter_index, {"tags": {"$nin": ["ocean"]}}) == {
        "drama",
        "comedy",
        "untagged",
    }


def test_filter_applies_before_top_k(client):
    index = create_index(client, dimension=2, metric="euclidean")
    vectors = {f"near-{n}": ([0.0, n / 10], {"user": "a"}) for n in range(5)}
    vectors["far"] = ([50.0, 50.0], {"user": "b"})
    put(client, index, vectors)

    response = query(
        client, index, topK=2, queryVector={"float32": [0, 0]}, filter={"user": "b"}
    )

    assert keys_of(response) == ["far"]


@pytest.mark.parametrize(
    "where",
    [
        {},
        ["genre"],
        {"$and": []},
        {"$and": {"genre": "drama"}},
        {"$not": {"genre": "drama"}},
        {"year": {"$gt": "2020"}},
        {"year": {"$gt": True}},
        {"genre": {"$in": []}},
        {"genre": {"$in": "drama"}},
        {"genre": {"$in": [["drama"]]}},
        {"genre": {"$eq": ["drama"]}},
        {"genre": {"$eq": {"nested": 1}}},
        {"genre": {"$exists": 1}},
        {"genre": {"$regex": "dr.*"}},
        {"genre": {}},
        {"genre": None},
    ],
)
def test_malformed_filters_are_rejected(client, filter_index, where):
    with rejected():
        filtered(client, filter_index, where)


def test_filter_on_non_filterable_key_is_rejected(client):
    index = create_index(client, nonFilterableMetadataKeys=["body"])
    put(client, index, {"a": (ALL_ONES, {"body": "long text", "user": "u"})})

    for where in ({"body": "long text"}, {"$or": [{"user": "u"}, {"body": "x"}]}):
        with rejected("non-filterable"):
            filtered(client, index, where)


# -- index configuration and modes --------------------------------------------------


def test_get_index_returns_metadata_configuration_and_mode(client):
    index = create_index(
        client,
        nonFilterableMetadataKeys=["body", "raw"],
        textSearchConfigurations=[{"metadataKey": "body", "language": "en"}],
    )

    described = client.get_index(vectorBucketName=BUCKET, indexName=index)["index"]

    assert described["indexMode"] == "ENHANCED"
    assert described["dimension"] == 3
    assert described["creationTime"] is not None
    assert described["metadataConfiguration"] == {
        "nonFilterableMetadataKeys": ["body", "raw"],
        "textSearchConfigurations": [
            {"metadataKey": "body", "language": "en", "status": "ACTIVE"}
        ],
    }


def test_index_creation_limits(client):
    with rejected("non-filterable"):
        create_index(client, nonFilterableMetadataKeys=[f"k{n}" for n in range(11)])
    with rejected("dimension"):
        create_index(client, name="too-wide", dimension=4097)
    create_index(client, name="widest", dimension=4096)  # moto alone refuses this


def test_creating_an_existing_index_conflicts_and_keeps_its_vectors(client):
    index = create_index(client)
    put(client, index, {"a": (ALL_ONES, {})})

    with pytest.raises(ClientError, match="ConflictException"):
        create_index(client)

    assert list_all(client, index) == ["a"]


def test_classic_index_refuses_text_search_but_still_answers_vectors(client):
    index = create_index(client, textSearchConfigurations=[{"metadataKey": "body"}])
    put(client, index, {"a": (ALL_ONES, {"body": "hello"})})

    client.update_index_mode(
        vectorBucketName=BUCKET, indexName=index, indexMode="CLASSIC"
    )

    described = client.get_index(vectorBucketName=BUCKET, indexName=index)["index"]
    assert described["indexMode"] == "CLASSIC"
    with rejected("ENHANCED"):
        query(
            client, index, topK=1, queryTexts=[{"text": "hello", "metadataKey": "body"}]
        )
    vector_only = query(client, index, topK=1, queryVector={"float32": ALL_ONES})
    assert keys_of(vector_only) == ["a"]


def test_classic_query_mode_is_refused_on_an_enhanced_index(client):
    index = create_index(client)

    with rejected("CLASSIC"):
        query(
            client,
            index,
            topK=1,
            queryVector={"float32": ALL_ONES},
            queryMode="CLASSIC",
        )


def test_text_search_can_be_added_to_an_existing_index(client):
    index = create_index(client, nonFilterableMetadataKeys=["body"])
    put(client, index, {"a": (ALL_ONES, {"body": "hello world"})})

    client.update_metadata_configuration(
        vectorBucketName=BUCKET,
        indexName=index,
        add={"textSearchConfigurations": [{"metadataKey": "body"}]},
    )

    found = query(
        client, index, topK=1, queryTexts=[{"text": "world", "metadataKey": "body"}]
    )
    assert keys_of(found) == ["a"]


# -- text and hybrid search ---------------------------------------------------------


@pytest.fixture
def text_index(client):
    return create_index(
        client,
        dimension=2,
        nonFilterableMetadataKeys=["body"],
        textSearchConfigurations=[
            {"metadataKey": "body", "language": "en"},
            {"metadataKey": "title"},
        ],
    )


def text_query(client, index, text, key="body", **params):
    return query(
        client, index, queryTexts=[{"text": text, "metadataKey": key}], **params
    )


def test_bm25_scores_follow_okapi_bm25(client, text_index):
    # Standard analyzer (no language) on "title": plain lowercase words.
    put(
        client,
        text_index,
        {
            "one": ([1, 0], {"title": "Apple banana"}),
            "two": ([1, 0], {"title": "apple apple cherry"}),
            "three": ([1, 0], {"title": "banana cherry date"}),
        },
    )

    response = text_query(
        client, text_index, "APPLE", key="title", topK=3, returnScores=True
    )

    idf = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))
    average_length = 8 / 3

    def bm25(frequency, length):
        norm = 1 - 0.75 + 0.75 * length / average_length
        return idf * frequency * 2.2 / (frequency + 1.2 * norm)

    assert keys_of(response) == ["two", "one"]  # "three" lacks the term
    scores = [hit["scores"]["bm25Scores"] for hit in response["vectors"]]
    assert scores == [
        [{"metadataKey": "title", "score": pytest.approx(bm25(2, 3))}],
        [{"metadataKey": "title", "score": pytest.approx(bm25(1, 2))}],
    ]
    assert "fused" not in response["vectors"][0]["scores"]


def test_english_analyzer_stems_and_drops_stop_words(client, text_index):
    put(
        client,
        text_index,
        {
            "alps": ([1, 0], {"body": "Alice went hiking in the Alps"}),
            "gear": ([1, 0], {"body": "Boots for hikes, and a hiker's poles"}),
            "cat": ([1, 0], {"body": "Carol's cats sleep all day"}),
            "empty": ([1, 0], {}),
        },
    )

    assert set(keys_of(text_query(client, text_index, "hiked", topK=5))) == {
        "alps",
        "gear",
    }
    assert keys_of(text_query(client, text_index, "carol cat", topK=5)) == ["cat"]
    assert keys_of(text_query(client, text_index, "the and of", topK=5)) == []


def test_text_search_respects_the_filter_and_top_k(client, text_index):
    put(
        client,
        text_index,
        {
            f"m{n}": ([1, 0], {"body": "memory " * (n + 1), "user": f"u{n % 2}"})
            for n in range(6)
        },
    )

    response = text_query(client, text_index, "memory", topK=2, filter={"user": "u1"})

    assert len(response["vectors"]) == 2
    assert all(int(key[1:]) % 2 == 1 for key in keys_of(response))


def test_text_query_rejects_unconfigured_or_repeated_keys(client, text_index):
    with rejected("not configured for text search"):
        text_query(client, text_index, "x", key="user", topK=1)
    with rejected("distinct"):
        query(
            client,
            text_index,
            topK=1,
            queryTexts=[
                {"text": "a", "metadataKey": "body"},
                {"text": "b", "metadataKey": "body"},
            ],
        )


@pytest.fixture
def hybrid_data(client, text_index):
    put(
        client,
        text_index,
        {
            "near": ([1, 0], {"body": "nothing relevant"}),
            "textless": ([1, 0.5], {}),
            "mid": ([1, 1], {"body": "hiking trip"}),
            "far": ([0, 1], {"body": "hiking hiking hiking"}),
        },
    )
    return text_index


def test_hybrid_fuses_both_rankings_by_reciprocal_rank(client, hybrid_data):
    response = text_query(
        client,
        hybrid_data,
        "hiking",
        topK=4,
        queryVector={"float32": [1, 0]},
        returnScores=True,
        returnDistance=True,
    )

    # vector ranks: near 1, textless 2, mid 3, far 4; text ranks: far 1, mid 2
    expected = {
        "far": 1 / 64 + 1 / 61,
        "mid": 1 / 63 + 1 / 62,
        "near": 1 / 61,
        "textless": 1 / 62,
    }
    assert keys_of(response) == ["far", "mid", "near", "textless"]
    by_key = {hit["key"]: hit for hit in response["vectors"]}
    for key, fused in expected.items():
        assert by_key[key]["scores"]["fused"] == pytest.approx(fused)
        assert by_key[key]["scores"]["vectorDistance"] == by_key[key]["distance"]
    assert "bm25Scores" not in by_key["textless"]["scores"]
    assert by_key["far"]["scores"]["bm25Scores"][0]["metadataKey"] == "body"


def test_hybrid_takes_top_k_candidates_from_each_ranking(client, hybrid_data):
    response = text_query(
        client,
        hybrid_data,
        "hiking",
        topK=2,
        queryVector={"float32": [1, 0]},
        returnScores=True,
        returnDistance=True,
    )

    # vector candidates: near, textless; text candidates: far, mid.
    assert keys_of(response) == ["far", "near"]  # 1/61 each; ties go by key
    far = response["vectors"][0]
    assert "vectorDistance" not in far["scores"]
    assert "distance" not in far


# -- limits -------------------------------------------------------------------------


def test_write_and_read_batch_limits(client):
    index = create_index(client)
    too_many = {f"k{n}": (ALL_ONES, {}) for n in range(501)}

    with rejected("500"):
        put(client, index, too_many)
    assert list_all(client, index) == []

    with rejected("500"):
        client.delete_vectors(
            vectorBucketName=BUCKET, indexName=index, keys=list(too_many)
        )
    with rejected("100"):
        client.get_vectors(
            vectorBucketName=BUCKET, indexName=index, keys=list(too_many)[:101]
        )


def test_vector_key_length(client):
    index = create_index(client)

    put(client, index, {"k" * 1024: (ALL_ONES, {})})
    with rejected("1024"):
        put(client, index, {"k" * 1025: (ALL_ONES, {})})


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 1e39])
def test_non_finite_float32_values_are_rejected(client, bad):
    index = create_index(client)

    with rejected("finite"):
        put(client, index, {"a": ([1.0, bad, 0.0], {})})


def test_metadata_limits(client):
    index = create_index(client, nonFilterableMetadataKeys=["body"])
    three_kb = "x" * 3000

    put(client, index, {"fifty": (ALL_ONES, {f"k{n}": n for n in range(50)})})
    put(client, index, {"big-body": (ALL_ONES, {"body": "y" * 40_000})})
    with rejected("at most 50"):
        put(client, index, {"a": (ALL_ONES, {f"k{n}": n for n in range(51)})})
    with rejected("Filterable metadata"):
        put(client, index, {"a": (ALL_ONES, {"note": three_kb})})
    put(client, index, {"ok": (ALL_ONES, {"body": three_kb})})
    with rejected("40960"):
        put(client, index, {"a": (ALL_ONES, {"body": "z" * 41_000})})
    with rejected("null"):
        put(client, index, {"a": (ALL_ONES, {"note": None})})


# -- listing ------------------------------------------------------------------------


@pytest.fixture
def listed_index(client):
    index = create_index(client)
    put(client, index, {f"key-{n:02d}": (ALL_ONES, {"n": n}) for n in range(25)})
    return index


def test_list_pages_cover_every_key_once(client, listed_index):
    first = client.list_vectors(
        vectorBucketName=BUCKET, indexName=listed_index, maxResults=7
    )

    assert len(first["vectors"]) == 7
    assert first["vectors"][0] == {"key": "key-00"}  # no data or metadata unasked
    keys = list_all(client, listed_index, maxResults=7)
    assert sorted(keys) == [f"key-{n:02d}" for n in range(25)]
    assert len(keys) == len(set(keys))


def test_list_returns_data_and_metadata_on_request(client, listed_index):
    page = client.list_vectors(
        vectorBucketName=BUCKET,
        indexName=listed_index,
        maxResults=1,
        returnData=True,
        returnMetadata=True,
    )

    assert page["vectors"] == [
        {"key": "key-00", "data": {"float32": ALL_ONES}, "metadata": {"n": 0}}
    ]


def test_list_segments_partition_the_keys(client, listed_index):
    segments = [
        list_all(client, listed_index, maxResults=3, segmentCount=4, segmentIndex=n)
        for n in range(4)
    ]

    every_key = [key for segment in segments for key in segment]
    assert sorted(every_key) == [f"key-{n:02d}" for n in range(25)]
    assert len(every_key) == len(set(every_key))
    assert sum(1 for segment in segments if segment) > 1


@pytest.mark.parametrize(
    "params",
    [
        {"maxResults": 1001},
        {"segmentCount": 17, "segmentIndex": 0},
        {"segmentCount": 4, "segmentIndex": 4},
        {"segmentIndex": 1},
        {"nextToken": "not-a-token"},
    ],
)
def test_list_rejects_bad_parameters(client, listed_index, params):
    with rejected():
        client.list_vectors(vectorBucketName=BUCKET, indexName=listed_index, **params)


def test_list_token_belongs_to_its_segment(client, listed_index):
    page = client.list_vectors(
        vectorBucketName=BUCKET,
        indexName=listed_index,
        maxResults=1,
        segmentCount=2,
        segmentIndex=0,
    )

    with rejected("another listing"):
        client.list_vectors(
            vectorBucketName=BUCKET,
            indexName=listed_index,
            segmentCount=2,
            segmentIndex=1,
            nextToken=page["nextToken"],
        )


def test_list_page_stops_after_one_mebibyte(client):
    index = create_index(client, nonFilterableMetadataKeys=["body"])
    put(
        client,
        index,
        {f"k{n:02d}": (ALL_ONES, {"body": "b" * 30_000}) for n in range(40)},
    )

    first = client.list_vectors(vectorBucketName=BUCKET, indexName=index)

    assert 30 < len(first["vectors"]) < 40
    assert "nextToken" in first
    assert len(list_all(client, index)) == 40


# -- call counting and faults -------------------------------------------------------


def test_calls_are_counted_for_every_client(fake, client):
    index = create_index(client)
    other = boto3.session.Session().client("s3vectors", region_name="us-east-1")
    other.put_vectors(
        vectorBucketName=BUCKET,
        indexName=index,
        vectors=[{"key": "a", "data": {"float32": ALL_ONES}}],
    )
    query(client, index, topK=1, queryVector={"float32": ALL_ONES})

    assert fake.calls == {
        "CreateVectorBucket": 1,
        "CreateIndex": 1,
        "PutVectors": 1,
        "QueryVectors": 1,
    }
    assert fake.call_log[-2:] == ["PutVectors", "QueryVectors"]

    fake.reset_calls()
    query(client, index, topK=1, queryVector={"float32": ALL_ONES})
    assert fake.calls == {"QueryVectors": 1}


def test_injected_throttling_reaches_the_caller_as_client_error(fake, client):
    index = create_index(client)
    single_attempt = fake.client(config=Config(retries={"total_max_attempts": 1}))
    fake.fail_next("PutVectors", code="ThrottlingException", status=429)
    fake.reset_calls()

    with pytest.raises(ClientError) as failure:
        put(single_attempt, index, {"a": (ALL_ONES, {})})

    assert failure.value.response["Error"]["Code"] == "ThrottlingException"
    assert failure.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert list_all(client, index) == []
    put(single_attempt, index, {"a": (ALL_ONES, {})})  # one failure only
    assert fake.calls["PutVectors"] == 2


def test_botocore_retries_injected_unavailability(fake, client):
    index = create_index(client)
    retrying = fake.client(
        config=Config(retries={"mode": "standard", "max_attempts": 3})
    )
    fake.fail_next("QueryVectors", times=2)
    fake.reset_calls()

    response = query(retrying, index, topK=1, queryVector={"float32": ALL_ONES})

    assert response["ResponseMetadata"]["RetryAttempts"] == 2
    assert fake.calls["QueryVectors"] == 3
    assert len(fake.retry_sleeps) == 2  # asked for, not slept


def test_fail_next_wants_an_operation_name(fake):
    with pytest.raises(ValueError, match="put_vectors"):
        fake.fail_next("put_vectors")


def test_fake_restores_moto_and_environment_on_exit(monkeypatch):
    monkeypatch.setenv("AWS_PROFILE", "someone")
    routes_before = dict(moto_s3vectors_urls.url_paths)

    with fake_s3vectors():
        assert "AWS_PROFILE" not in os.environ
        assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"

    assert moto_s3vectors_urls.url_paths == routes_before
    assert os.environ["AWS_PROFILE"] == "someone"


# -- the network guard (tests/conftest.py) ------------------------------------------


def test_an_unmocked_aws_call_fails_loudly(monkeypatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }.items():
        monkeypatch.setenv(name, value)
    unmocked = boto3.client("s3vectors", region_name="us-east-1")

    with pytest.raises(pytest.fail.Exception, match=r"s3vectors\.us-east-1\.api\.aws"):
        unmocked.list_vector_buckets()


def test_an_operation_the_fake_lacks_fails_loudly(client):
    # Not routed by moto nor by the fake: it would go to AWS.
    with pytest.raises(pytest.fail.Exception, match="only loopback"):
        client.put_vector_bucket_default_index_mode(
            vectorBucketName=BUCKET, defaultIndexMode="ENHANCED"
        )


def test_raw_sockets_reach_loopback_only():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with socket.create_connection(listener.getsockname(), timeout=1):
            pass
    with pytest.raises(pytest.fail.Exception, match="192.0.2.1"):
        socket.create_connection(("192.0.2.1", 443), timeout=1)
    with socket.socket() as sock, pytest.raises(pytest.fail.Exception):
        sock.connect_ex(("192.0.2.1", 443))
