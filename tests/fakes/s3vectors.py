"""A stand-in for Amazon S3 Vectors: moto's s3vectors backend, extended for our tests.

Real boto3 `s3vectors` clients (any of them, including the one the store builds for
itself) send HTTP requests that moto intercepts, so serialisation, error parsing and
retries are botocore's own. moto 5.2.5 stores vectors but lacks QueryVectors,
UpdateIndexMode, UpdateMetadataConfiguration, index settings, paging and AWS's
limits; this module answers every s3vectors route with a subclass of moto's response
class that adds them. Operations neither moto nor this module route (for example
PutVectorBucketDefaultIndexMode) still leave for AWS, which the network guard in
tests/conftest.py turns into a test failure.

    with fake_s3vectors() as fake:
        client = boto3.client("s3vectors", region_name="us-east-1")
        ...
        assert fake.calls["PutVectors"] == 2
        fake.reset_calls()
        fake.fail_next("QueryVectors", code="ThrottlingException", status=429)

Beyond moto: CreateIndex keeps `metadataConfiguration`, answers ConflictException for
an existing name (moto replaces the index) and accepts dimension 4096; GetIndex
returns the configuration and `indexMode` (ENHANCED unless changed); vector data is
stored as float32, as AWS does.

Behaviour the AWS documentation leaves open, and what this fake does:
- `$ne` / `$nin` on a vector that lacks the key: no match, unless the test sets
  `fake.negation_matches_missing_keys = True`. Code that stores the key on every
  vector, or says `$exists` explicitly, behaves the same under both readings.
- Array metadata matches `$eq`/`$in` (and the range operators) when any element
  does; `$ne`/`$nin` match when no element does.
- Several operators in one condition (`{"year": {"$gte": 1, "$lt": 5}}`) are ANDed.
  An empty filter `{}`, unknown operators and wrongly typed operands are rejected.
- Metadata size is the length of its compact UTF-8 JSON; top-level nulls are
  rejected; filterable values are strings, finite numbers, booleans or lists of them.
- Text search: lowercase word tokens; for language "en" also English stop words, a
  possessive "'s" and a small suffix-stripping stemmer. Okapi BM25 (k1=1.2, b=0.75,
  idf = ln(1 + (N - df + 0.5) / (df + 0.5))) with N, df and the average length taken
  over every vector of the index holding text under that key, as a search index keeps
  them; only vectors that pass the filter are ranked, and only those matching at least
  one query term are returned. Several `queryTexts` in a text-only query add up.
- Hybrid: each ranking (the vector one and one per query text) contributes its best
  topK candidates, fused by reciprocal rank fusion (k=60); ties go to the smaller key.
  AWS returns `vectorDistance` only "when a hybrid result matches the vector search",
  which implies bounded candidate lists; their size is not documented.
- CLASSIC indexes filter exactly like ENHANCED ones here (AWS may return fewer than
  topK in CLASSIC mode); they only refuse text search.
- ListVectors returns keys in sorted order within a segment (segment = a hash of the
  key) and stops a page early once the vectors it has processed (4 bytes per
  dimension plus key and metadata) reach 1 MiB, as AWS documents.
- QueryVectors never returns a nextToken and refuses one.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import math
import operator
import os
import re
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from numbers import Real
from typing import Any
from unittest import mock

import boto3
import botocore.endpoint
import botocore.loaders
import botocore.session
import numpy as np
from moto import mock_aws
from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult, EmptyResult
from moto.core.routing import get_service_router
from moto.s3vectors import urls as moto_s3vectors_urls
from moto.s3vectors.exceptions import ValidationError
from moto.s3vectors.models import Index
from moto.s3vectors.responses import S3VectorsResponse
from werkzeug.exceptions import NotFound

REGION = "us-east-1"

# Limits from the S3 user guide ("Limitations and restrictions") and botocore's model.
MAX_VECTORS_PER_WRITE = 500
MAX_KEYS_PER_GET = 100
MAX_TOP_K = 100
MAX_DIMENSION = 4096
MAX_VECTOR_KEY_LENGTH = 1024
MAX_METADATA_BYTES = 40 * 1024
MAX_FILTERABLE_METADATA_BYTES = 2 * 1024
MAX_METADATA_KEYS = 50
MAX_NON_FILTERABLE_KEYS = 10
MAX_TEXT_SEARCH_KEYS = 10
MAX_QUERY_TEXTS = 10
MAX_QUERY_TEXT_LENGTH = 1024
DEFAULT_LIST_PAGE_SIZE = 500
MAX_LIST_PAGE_SIZE = 1000
MAX_LIST_SEGMENTS = 16
LIST_PAGE_BYTES = 1024 * 1024
TEXT_LANGUAGES = ("en", "fr", "es", "pt", "it", "de", "nl", "zh", "ja", "ko")
INDEX_MODES = ("CLASSIC", "ENHANCED")
DEFAULT_INDEX_MODE = "ENHANCED"
INDEX_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")

RRF_K = 60
BM25_K1 = 1.2
BM25_B = 0.75

FAKE_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    # A developer's ~/.aws files must not change endpoints, retries or credentials.
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
# Any of these would send the client elsewhere or pick other credentials.
ENVIRONMENT_TO_CLEAR = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3VECTORS",
    "AWS_RETRY_MODE",
    "AWS_MAX_ATTEMPTS",
)

# Operations moto 5.2.5 does not route; without these they would leave for AWS.
ADDED_ROUTES = (
    "{0}/QueryVectors$",
    "{0}/UpdateIndexMode$",
    "{0}/UpdateMetadataConfiguration$",
)


class ConflictError(ServiceException):
    code = "ConflictException"


@functools.cache
def s3vectors_operation_names() -> frozenset[str]:
    model = botocore.session.get_session().get_service_model("s3vectors")
    return frozenset(model.operation_names)


# -- the handle tests hold ---------------------------------------------------------


@dataclass
class _Fault:
    code: str
    status: int
    message: str
    remaining: int


class _NoSleepClock:
    """Stands in for `time` inside botocore.endpoint: retries run at once.

    The delays botocore asked for are kept so a test can still see the back-off.
    """

    def __init__(self, sleeps: list[float]) -> None:
        self._sleeps = sleeps

    def sleep(self, seconds: float) -> None:
        self._sleeps.append(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


class FakeS3Vectors:
    """What a test holds while the fake runs: call counts and fault injection.

    `calls` counts HTTP requests by operation name ("PutVectors"), from any client,
    so each retry attempt counts; `call_log` keeps their order.
    """

    region = REGION

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.call_log: list[str] = []
        self.retry_sleeps: list[float] = []
        self.negation_matches_missing_keys = False
        self._faults: dict[str, deque[_Fault]] = {}
        self._lock = threading.Lock()

    def client(self, **kwargs: Any):
        """A new boto3 s3vectors client; kwargs go to boto3.client (config=...)."""
        return boto3.client("s3vectors", region_name=self.region, **kwargs)

    def reset_calls(self) -> None:
        """Forget the calls (and retry delays) seen so far."""
        with self._lock:
            self.calls.clear()
            self.call_log.clear()
            self.retry_sleeps.clear()

    def fail_next(
        self,
        operation_name: str,
        times: int = 1,
        code: str = "ServiceUnavailableException",
        status: int = 503,
        message: str | None = None,
    ) -> None:
        """Answer the next `times` requests for an operation with an AWS error.

        botocore retries 5xx and throttling codes, so one failing call of our code
        may consume several of these.
        """
        if operation_name not in s3vectors_operation_names():
            raise ValueError(f"{operation_name!r} is not an S3 Vectors operation name.")
        if times < 1:
            raise ValueError("times must be at least 1.")
        fault = _Fault(code, status, message or f"Injected {code}.", times)
        with self._lock:
            self._faults.setdefault(operation_name, deque()).append(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, operation_name: str) -> _Fault | None:
        queue = self._faults.get(operation_name)
        if not queue:
            return None
        fault = queue[0]
        fault.remaining -= 1
        if fault.remaining == 0:
            queue.popleft()
        return fault

    def _handle(self, request, full_url: str, headers) -> tuple[int, dict, str]:
        """Every s3vectors request moto intercepts arrives here."""
        operation_name = _operation_name(request)
        with self._lock:
            self.calls[operation_name] += 1
            self.call_log.append(operation_name)
            fault = self._take_fault(operation_name)
        if fault is not None:
            return _error_response(fault)
        return ExtendedS3VectorsResponse(self)._dispatch(request, full_url, headers)


def _operation_name(request) -> str:
    try:
        operation_model, _ = get_service_router("s3vectors").match(request)
    except (NotFound, NotImplementedError):
        return "Unknown"
    return operation_model.name


def _error_response(fault: _Fault) -> tuple[int, dict, str]:
    # Shaped like an AWS restJson1 error, so botocore raises ClientError with this
    # code and applies its own retry rules to it.
    headers = {
        "Content-Type": "application/json",
        "x-amzn-ErrorType": fault.code,
        "x-amzn-RequestId": str(uuid.uuid4()),
    }
    return fault.status, headers, json.dumps({"message": fault.message})


@functools.cache
def _shared_data_loader() -> botocore.loaders.Loader:
    return botocore.loaders.create_loader()


def new_session() -> boto3.session.Session:
    """A fresh boto3 session that reuses the already parsed botocore data files.

    Parsing the endpoint and service JSON costs about 60 ms per session, and every
    fake starts a new one (as moto does) so credentials and event handlers never
    leak from one test to the next; only the read-only file cache is shared.
    """
    core = botocore.session.Session()
    core.register_component("data_loader", _shared_data_loader())
    return boto3.session.Session(botocore_session=core)


@contextmanager
def fake_s3vectors(*, instant_retries: bool = True) -> Iterator[FakeS3Vectors]:
    """Run moto with the extended S3 Vectors backend; yield the handle.

    With `instant_retries`, botocore's retry back-off does not sleep (the delays it
    asked for land in `fake.retry_sleeps`), which keeps fault tests fast.
    """
    fake = FakeS3Vectors()
    routes = dict.fromkeys(
        (*moto_s3vectors_urls.url_paths, *ADDED_ROUTES), fake._handle
    )
    with ExitStack() as stack:
        # moto builds its URL table from this dict on every request; replacing
        # the handlers before the mock starts routes everything through `fake`.
        stack.enter_context(
            mock.patch.dict(moto_s3vectors_urls.url_paths, routes, clear=True)
        )
        if instant_retries:
            stack.enter_context(
                mock.patch.object(
                    botocore.endpoint, "time", _NoSleepClock(fake.retry_sleeps)
                )
            )
        stack.enter_context(mock_aws())
        # After mock_aws, which sets credentials of its own.
        stack.enter_context(mock.patch.dict(os.environ, FAKE_ENVIRONMENT))
        for name in ENVIRONMENT_TO_CLEAR:
            os.environ.pop(name, None)  # patch.dict restores them on exit
        stack.enter_context(mock.patch.object(boto3, "DEFAULT_SESSION", new_session()))
        yield fake


# -- index settings moto does not keep ----------------------------------------------


@dataclass
class IndexSettings:
    non_filterable_keys: frozenset[str] = frozenset()
    # metadata key -> analyzer language (None: the standard analyzer)
    text_search_keys: dict[str, str | None] = field(default_factory=dict)
    mode: str = DEFAULT_INDEX_MODE
    created: datetime = field(default_factory=lambda: datetime.now(UTC))


def settings_of(index: Index) -> IndexSettings:
    settings = getattr(index, "fake_settings", None)
    if settings is None:
        settings = index.fake_settings = IndexSettings()
    return settings


# -- the extended response class ----------------------------------------------------


class ExtendedS3VectorsResponse(S3VectorsResponse):
    """moto's s3vectors handler with the operations and checks it lacks."""

    def __init__(self, fake: FakeS3Vectors) -> None:
        super().__init__()
        self.fake = fake

    def _target_index(self) -> Index:
        bucket_name = self._get_param("vectorBucketName")
        index_name = self._get_param("indexName")
        index_arn = self._get_param("indexArn")
        self._validate_index_params(index_arn, index_name, bucket_name)
        return self.s3vectors_backend.get_index(
            vector_bucket_name=bucket_name, index_name=index_name, index_arn=index_arn
        )

    # indexes

    def create_index(self) -> ActionResult:
        bucket = self.s3vectors_backend.get_vector_bucket(
            vector_bucket_name=self._get_param("vectorBucketName"),
            vector_bucket_arn=self._get_param("vectorBucketArn"),
        )
        index_name = self._get_param("indexName") or ""
        dimension = self._get_param("dimension")
        distance_metric = self._get_param("distanceMetric")
        data_type = self._get_param("dataType")
        if not INDEX_NAME.fullmatch(index_name):
            raise ValidationError(
                f"Invalid index name {index_name!r}: 3 to 63 lowercase letters, "
                "digits, hyphens or dots, starting and ending with a letter or digit."
            )
        if data_type != "float32":
            raise ValidationError("dataType must be float32.")
        # moto rejects 4096 itself, which AWS allows.
        if not isinstance(dimension, int) or not 1 <= dimension <= MAX_DIMENSION:
            raise ValidationError(f"dimension must be between 1 and {MAX_DIMENSION}.")
        if distance_metric not in ("cosine", "euclidean"):
            raise ValidationError("distanceMetric must be cosine or euclidean.")
        if any(index.index_name == index_name for index in bucket.indexes.values()):
            # moto would silently replace the index and lose its vectors.
            raise ConflictError(f"An index named {index_name} already exists.")
        configuration = self._get_param("metadataConfiguration") or {}
        non_filterable = configuration.get("nonFilterableMetadataKeys") or []
        if len(non_filterable) > MAX_NON_FILTERABLE_KEYS:
            raise ValidationError(
                f"At most {MAX_NON_FILTERABLE_KEYS} non-filterable metadata keys "
                f"per index; got {len(non_filterable)}."
            )
        text_search_keys = _text_search_keys(
            configuration.get("textSearchConfigurations") or []
        )
        self.s3vectors_backend.create_index(
            vector_bucket_name=bucket.vector_bucket_name,
            vector_bucket_arn=None,
            index_name=index_name,
            data_type=data_type,
            dimension=dimension,
            distance_metric=distance_metric,
            tags=self._get_param("tags"),
        )
        index = self.s3vectors_backend.get_index(
            vector_bucket_name=bucket.vector_bucket_name,
            index_name=index_name,
            index_arn=None,
        )
        index.fake_settings = IndexSettings(
            non_filterable_keys=frozenset(non_filterable),
            text_search_keys=text_search_keys,
        )
        return ActionResult({"indexArn": index.index_arn})

    def get_index(self) -> ActionResult:
        if self._get_param("vectorBucketName") and self._get_param("indexArn"):
            raise ValidationError(
                "Must specify either indexArn or both vectorBucketName and indexName"
            )
        index = self.s3vectors_backend.get_index(
            vector_bucket_name=self._get_param("vectorBucketName"),
            index_name=self._get_param("indexName"),
            index_arn=self._get_param("indexArn"),
        )
        settings = settings_of(index)
        description: dict[str, Any] = {
            "vectorBucketName": index.vectorBucketName,
            "indexName": index.index_name,
            "indexArn": index.index_arn,
            "creationTime": settings.created,
            "dataType": index.data_type,
            "dimension": index.dimension,
            "distanceMetric": index.distance_metric,
            "indexMode": settings.mode,
        }
        configuration: dict[str, Any] = {}
        if settings.non_filterable_keys:
            configuration["nonFilterableMetadataKeys"] = sorted(
                settings.non_filterable_keys
            )
        if settings.text_search_keys:
            configuration["textSearchConfigurations"] = [
                _text_search_description(key, language)
                for key, language in settings.text_search_keys.items()
            ]
        if configuration:
            description["metadataConfiguration"] = configuration
        return ActionResult({"index": description})

    def update_index_mode(self) -> EmptyResult:
        index = self._target_index()
        mode = self._get_param("indexMode")
        if mode not in INDEX_MODES:
            raise ValidationError(f"indexMode must be one of {', '.join(INDEX_MODES)}.")
        settings_of(index).mode = mode
        return EmptyResult()

    def update_metadata_configuration(self) -> ActionResult:
        index = self._target_index()
        settings = settings_of(index)
        additions = (self._get_param("add") or {}).get("textSearchConfigurations")
        deletions = (self._get_param("delete") or {}).get("textSearchConfigurations")
        if bool(additions) == bool(deletions):
            raise ValidationError("Specify either add or delete, but not both.")
        if settings.mode != "ENHANCED":
            raise ValidationError("Text search configurations need an ENHANCED index.")
        if additions:
            added = _text_search_keys(additions)
            if clash := sorted(added.keys() & settings.text_search_keys.keys()):
                raise ConflictError(f"Already configured for text search: {clash}.")
            if len(added) + len(settings.text_search_keys) > MAX_TEXT_SEARCH_KEYS:
                raise ValidationError(
                    f"At most {MAX_TEXT_SEARCH_KEYS} text search keys."
                )
            settings.text_search_keys.update(added)
        else:
            for entry in deletions:
                key = entry.get("metadataKey")
                if key not in settings.text_search_keys:
                    raise ValidationError(f"{key!r} is not configured for text search.")
                del settings.text_search_keys[key]
        return ActionResult({"indexArn": index.index_arn})

    # vectors

    def put_vectors(self) -> EmptyResult:
        index = self._target_index()
        settings = settings_of(index)
        vectors = self._get_param("vectors") or []
        if not 1 <= len(vectors) <= MAX_VECTORS_PER_WRITE:
            raise ValidationError(
                f"A PutVectors call takes 1 to {MAX_VECTORS_PER_WRITE} vectors; "
                f"got {len(vectors)}."
            )
        accepted = []
        for vector in vectors:
            key = vector.get("key")
            _check_vector_key(key)
            data = _float32_vector(
                (vector.get("data") or {}).get("float32"),
                index.dimension,
                f"vector {key!r}",
            )
            metadata = vector.get("metadata")
            if metadata is None:
                metadata = {}
            _check_metadata(key, metadata, settings.non_filterable_keys)
            accepted.append(
                {"key": key, "data": {"float32": data}, "metadata": metadata}
            )
        self.s3vectors_backend.put_vectors(
            vector_bucket_name=self._get_param("vectorBucketName"),
            index_name=self._get_param("indexName"),
            index_arn=self._get_param("indexArn"),
            vectors=accepted,
        )
        return EmptyResult()

    def get_vectors(self) -> ActionResult:
        keys = self._get_param("keys") or []
        if len(keys) > MAX_KEYS_PER_GET:
            raise ValidationError(
                f"A GetVectors call takes at most {MAX_KEYS_PER_GET} keys; "
                f"got {len(keys)}."
            )
        for key in keys:
            _check_vector_key(key)
        return super().get_vectors()

    def delete_vectors(self) -> EmptyResult:
        keys = self._get_param("keys") or []
        if len(keys) > MAX_VECTORS_PER_WRITE:
            raise ValidationError(
                f"A DeleteVectors call takes at most {MAX_VECTORS_PER_WRITE} keys; "
                f"got {len(keys)}."
            )
        for key in keys:
            _check_vector_key(key)
        return super().delete_vectors()

    def list_vectors(self) -> ActionResult:
        index = self._target_index()
        page_size = self._get_param("maxResults")
        if page_size is None:
            page_size = DEFAULT_LIST_PAGE_SIZE
        if not 1 <= page_size <= MAX_LIST_PAGE_SIZE:
            raise ValidationError(
                f"maxResults must be between 1 and {MAX_LIST_PAGE_SIZE}."
            )
        segment_count = self._get_param("segmentCount")
        segment_index = self._get_param("segmentIndex")
        if (segment_count is None) != (segment_index is None):
            raise ValidationError("segmentCount and segmentIndex go together.")
        if segment_count is None:
            segment_count, segment_index = 1, 0
        if not 1 <= segment_count <= MAX_LIST_SEGMENTS:
            raise ValidationError(
                f"segmentCount must be between 1 and {MAX_LIST_SEGMENTS}."
            )
        if not 0 <= segment_index < segment_count:
            raise ValidationError(
                "segmentIndex must be at least 0 and below segmentCount."
            )
        after = _read_list_token(
            self._get_param("nextToken"), segment_count, segment_index
        )
        keys = sorted(
            key
            for key in index.vectors
            if _segment_of(key, segment_count) == segment_index
            and (after is None or key > after)
        )
        return_data = self._get_bool_param("returnData", False)
        return_metadata = self._get_bool_param("returnMetadata", False)
        page: list[dict] = []
        processed_bytes = 0
        for key in keys:
            if len(page) == page_size or processed_bytes >= LIST_PAGE_BYTES:
                break
            vector = index.vectors[key]
            processed_bytes += _stored_size(vector, index.dimension)
            entry: dict[str, Any] = {"key": key}
            if return_data:
                entry["data"] = vector.data
            if return_metadata:
                entry["metadata"] = vector.metadata
            page.append(entry)
        result: dict[str, Any] = {"vectors": page}
        if len(page) < len(keys):
            result["nextToken"] = _list_token(
                page[-1]["key"], segment_count, segment_index
            )
        return ActionResult(result)

    def query_vectors(self) -> ActionResult:
        index = self._target_index()
        settings = settings_of(index)
        top_k = self._get_param("topK")
        if not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
            raise ValidationError(
                f"topK must be between 1 and {MAX_TOP_K}; got {top_k}."
            )
        if self._get_param("nextToken") is not None:
            raise ValidationError("Invalid nextToken.")  # this fake never issues one
        query_mode = self._get_param("queryMode")
        if query_mode is not None and query_mode not in INDEX_MODES:
            raise ValidationError(f"queryMode must be one of {', '.join(INDEX_MODES)}.")
        if query_mode == "CLASSIC" and settings.mode == "ENHANCED":
            raise ValidationError("You can't specify CLASSIC for an ENHANCED index.")
        raw_vector = self._get_param("queryVector")
        query_texts = self._get_param("queryTexts") or []
        if raw_vector is None and not query_texts:
            raise ValidationError("Specify queryVector, queryTexts or both.")
        query_vector = None
        if raw_vector is not None:
            query_vector = _float32_vector(
                raw_vector.get("float32"), index.dimension, "queryVector"
            )
        if query_texts:
            _check_query_texts(query_texts, settings)

        raw_filter = self._get_param("filter")
        passes = (
            _accept_all
            if raw_filter is None
            else FilterCompiler(
                settings.non_filterable_keys, self.fake.negation_matches_missing_keys
            ).compile(raw_filter)
        )
        candidates = {
            key: vector
            for key, vector in index.vectors.items()
            if passes(vector.metadata or {})
        }
        distances: dict[str, float] = {}
        if query_vector is not None:
            distances = _distances(candidates, query_vector, index.distance_metric)
        text_scores = {
            entry["metadataKey"]: bm25_scores(
                index,
                entry["metadataKey"],
                settings.text_search_keys[entry["metadataKey"]],
                entry["text"],
                candidates.keys(),
            )
            for entry in query_texts
        }
        ranking = rank(
            distances, text_scores, top_k, with_vector=query_vector is not None
        )

        return_distance = self._get_bool_param("returnDistance", False)
        return_metadata = self._get_bool_param("returnMetadata", False)
        return_scores = self._get_bool_param("returnScores", False)
        results = []
        for key in ranking.keys:
            entry: dict[str, Any] = {"key": key}
            if return_distance and key in ranking.distances:
                entry["distance"] = ranking.distances[key]
            if return_metadata:
                entry["metadata"] = candidates[key].metadata or {}
            if return_scores and text_scores:
                entry["scores"] = ranking.scores_of(key)
            results.append(entry)
        return ActionResult(
            {"vectors": results, "distanceMetric": index.distance_metric}
        )


@dataclass
class Ranking:
    keys: list[str]
    # Distances of the results the vector search found (all of them, or its top K
    # candidates in a hybrid search).
    distances: dict[str, float]
    text_scores: dict[str, dict[str, float]]  # metadata key -> vector key -> BM25
    fused: dict[str, float]

    def scores_of(self, key: str) -> dict[str, Any]:
        scores: dict[str, Any] = {}
        matched = [
            {"metadataKey": metadata_key, "score": by_key[key]}
            for metadata_key, by_key in self.text_scores.items()
            if key in by_key
        ]
        if matched:
            scores["bm25Scores"] = matched
        if self.fused:
            scores["fused"] = self.fused[key]
            if key in self.distances:
                scores["vectorDistance"] = self.distances[key]
        return scores


def rank(
    distances: dict[str, float],
    text_scores: dict[str, dict[str, float]],
    top_k: int,
    *,
    with_vector: bool,
) -> Ranking:
    """Order results as AWS documents: by distance, by BM25, or hybrid by RRF."""

    def by_distance(key: str) -> tuple[float, str]:
        return distances[key], key

    if not text_scores:
        keys = sorted(distances, key=by_distance)[:top_k]
        return Ranking(keys, distances, {}, {})
    if not with_vector:
        totals: Counter[str] = Counter()
        for scores in text_scores.values():
            totals.update(scores)
        keys = sorted(totals, key=lambda key: (-totals[key], key))[:top_k]
        return Ranking(keys, {}, text_scores, {})
    vector_candidates = sorted(distances, key=by_distance)[:top_k]
    text_candidates = [
        sorted(scores, key=lambda key, scores=scores: (-scores[key], key))[:top_k]
        for scores in text_scores.values()
    ]
    fused = reciprocal_rank_fusion([vector_candidates, *text_candidates])
    keys = sorted(fused, key=lambda key: (-fused[key], key))[:top_k]
    window = {key: distances[key] for key in vector_candidates}
    return Ranking(keys, window, text_scores, fused)


def reciprocal_rank_fusion(rankings: list[list[str]]) -> dict[str, float]:
    fused: dict[str, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, start=1):
            fused[key] = fused.get(key, 0.0) + 1.0 / (RRF_K + rank)
    return fused


def _accept_all(metadata: dict) -> bool:
    return True


# -- request checks -----------------------------------------------------------------


def _text_search_keys(configurations: list[dict]) -> dict[str, str | None]:
    if len(configurations) > MAX_TEXT_SEARCH_KEYS:
        raise ValidationError(
            f"At most {MAX_TEXT_SEARCH_KEYS} text search configurations."
        )
    keys: dict[str, str | None] = {}
    for configuration in configurations:
        key = configuration.get("metadataKey")
        language = configuration.get("language")
        if not key:
            raise ValidationError("A text search configuration needs a metadataKey.")
        if key in keys:
            raise ValidationError(f"{key!r} is configured for text search twice.")
        if language is not None and language not in TEXT_LANGUAGES:
            raise ValidationError(f"Unsupported text search language {language!r}.")
        keys[key] = language
    return keys


def _text_search_description(key: str, language: str | None) -> dict[str, str]:
    description = {"metadataKey": key, "status": "ACTIVE"}
    if language is not None:
        description["language"] = language
    return description


def _check_vector_key(key: Any) -> None:
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_VECTOR_KEY_LENGTH:
        length = len(key) if isinstance(key, str) else 0
        raise ValidationError(
            f"A vector key has 1 to {MAX_VECTOR_KEY_LENGTH} characters; "
            f"got {length} characters."
        )


def _float32_vector(values: Any, dimension: int, what: str) -> list[float]:
    """The values as float32, as AWS stores them, after checking them.

    `what` names the vector in error messages ("vector 'k1'", "queryVector").
    """
    if not isinstance(values, list) or not all(
        isinstance(value, Real) and not isinstance(value, bool) for value in values
    ):
        raise ValidationError(f"{what}: the data must be a list of float32 numbers.")
    if len(values) != dimension:
        raise ValidationError(
            f"{what} must have length {dimension}, but has length {len(values)}."
        )
    with np.errstate(over="ignore"):
        array = np.asarray(values, dtype=np.float64).astype(np.float32)
    if not np.isfinite(array).all():
        raise ValidationError(f"{what}: the data must be finite float32 numbers.")
    return array.tolist()


def _json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def _is_scalar(value: Any) -> bool:
    if isinstance(value, bool | str):
        return True
    return isinstance(value, Real) and math.isfinite(value)


def _check_metadata(key: str, metadata: Any, non_filterable: frozenset[str]) -> None:
    if not isinstance(metadata, dict):
        raise ValidationError(f"Metadata of {key!r} must be a JSON object.")
    if len(metadata) > MAX_METADATA_KEYS:
        raise ValidationError(
            f"Metadata of {key!r} has {len(metadata)} keys; at most "
            f"{MAX_METADATA_KEYS} are allowed."
        )
    filterable = {}
    for name, value in metadata.items():
        if value is None:
            raise ValidationError(
                f"Metadata of {key!r}: {name} is null, which is unsupported."
            )
        if name in non_filterable:
            continue
        if not (
            _is_scalar(value)
            or (isinstance(value, list) and all(_is_scalar(item) for item in value))
        ):
            raise ValidationError(
                f"Filterable metadata of {key!r}: {name} must be a string, number, "
                "boolean or a list of them."
            )
        filterable[name] = value
    total = _json_size(metadata)
    if total > MAX_METADATA_BYTES:
        raise ValidationError(
            f"Metadata of {key!r} is {total} bytes; the limit is {MAX_METADATA_BYTES}."
        )
    filterable_size = _json_size(filterable)
    if filterable_size > MAX_FILTERABLE_METADATA_BYTES:
        raise ValidationError(
            f"Filterable metadata of {key!r} is {filterable_size} bytes; the limit "
            f"is {MAX_FILTERABLE_METADATA_BYTES}."
        )


def _check_query_texts(query_texts: list[dict], settings: IndexSettings) -> None:
    if settings.mode != "ENHANCED":
        raise ValidationError(
            "Full-text and hybrid search need an index in ENHANCED mode."
        )
    if len(query_texts) > MAX_QUERY_TEXTS:
        raise ValidationError(f"At most {MAX_QUERY_TEXTS} queryTexts.")
    seen: set[str] = set()
    for entry in query_texts:
        metadata_key = entry.get("metadataKey")
        text = entry.get("text") or ""
        if metadata_key not in settings.text_search_keys:
            raise ValidationError(
                f"{metadata_key!r} is not configured for text search."
            )
        if metadata_key in seen:
            raise ValidationError("Each queryTexts entry must target a distinct key.")
        if not 1 <= len(text) <= MAX_QUERY_TEXT_LENGTH:
            raise ValidationError(
                f"A query text has 1 to {MAX_QUERY_TEXT_LENGTH} characters."
            )
        seen.add(metadata_key)


# -- listing ------------------------------------------------------------------------


def _segment_of(key: str, segment_count: int) -> int:
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") % segment_count


def _list_token(after: str, segment_count: int, segment_index: int) -> str:
    state = {"after": after, "segment": [segment_count, segment_index]}
    return base64.urlsafe_b64encode(json.dumps(state).encode()).decode()


def _read_list_token(
    token: str | None, segment_count: int, segment_index: int
) -> str | None:
    if token is None:
        return None
    try:
        state = json.loads(base64.urlsafe_b64decode(token.encode()))
        after, segment = state["after"], state["segment"]
    except (binascii.Error, ValueError, TypeError, KeyError) as error:
        raise ValidationError("Invalid nextToken.") from error
    if segment != [segment_count, segment_index] or not isinstance(after, str):
        raise ValidationError("nextToken belongs to another listing.")
    return after


def _stored_size(vector, dimension: int) -> int:
    return 4 * dimension + len(vector.key.encode()) + _json_size(vector.metadata or {})


# -- distances ----------------------------------------------------------------------


def _distances(
    candidates: dict, query_vector: list[float], metric: str
) -> dict[str, float]:
    if not candidates:
        return {}
    keys = list(candidates)
    # Stored values are float32; the arithmetic is done in float64 to stay exact.
    matrix = np.array([candidates[key].data["float32"] for key in keys], np.float64)
    query = np.asarray(query_vector, dtype=np.float64)
    if metric == "euclidean":
        distances = np.linalg.norm(matrix - query, axis=1)
    else:
        norms = np.linalg.norm(matrix, axis=1) * np.linalg.norm(query)
        dots = matrix @ query
        # A zero vector has no direction; treat it as unrelated (similarity 0).
        similarity = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
        distances = 1.0 - similarity
    return {key: float(distance) for key, distance in zip(keys, distances, strict=True)}


# -- metadata filters ---------------------------------------------------------------

Predicate = Callable[[dict], bool]

_ORDERINGS = {
    "$gt": operator.gt,
    "$gte": operator.ge,
    "$lt": operator.lt,
    "$lte": operator.le,
}


def _values(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _same(stored: Any, wanted: Any) -> bool:
    # Python says True == 1; a metadata filter must not.
    if isinstance(stored, bool) or isinstance(wanted, bool):
        return (
            isinstance(stored, bool) and isinstance(wanted, bool) and stored is wanted
        )
    if _is_number(stored) and _is_number(wanted):
        return stored == wanted
    return type(stored) is type(wanted) and stored == wanted


class FilterCompiler:
    """Checks an S3 Vectors filter document and turns it into a predicate."""

    def __init__(
        self, non_filterable_keys: frozenset[str], negation_matches_missing: bool
    ) -> None:
        self.non_filterable_keys = non_filterable_keys
        self.negation_matches_missing = negation_matches_missing

    def compile(self, document: Any) -> Predicate:
        if not isinstance(document, dict) or not document:
            raise ValidationError("A filter must be a non-empty JSON object.")
        clauses = [self._clause(key, value) for key, value in document.items()]

        def all_clauses(metadata: dict) -> bool:
            return all(clause(metadata) for clause in clauses)

        return all_clauses

    def _clause(self, key: str, condition: Any) -> Predicate:
        if key in ("$and", "$or"):
            if not isinstance(condition, list) or not condition:
                raise ValidationError(f"{key} takes a non-empty array of filters.")
            parts = [self.compile(part) for part in condition]
            combine = all if key == "$and" else any

            def logical(metadata: dict) -> bool:
                return combine(part(metadata) for part in parts)

            return logical
        if key.startswith("$"):
            raise ValidationError(f"Unsupported operator {key} at the top of a filter.")
        if key in self.non_filterable_keys:
            raise ValidationError(f"Metadata key {key!r} is non-filterable.")
        if not isinstance(condition, dict):
            return self._operator(key, "$eq", condition)
        if not condition:
            raise ValidationError(f"The condition on {key!r} is empty.")
        tests = [
            self._operator(key, name, operand) for name, operand in condition.items()
        ]

        def every_operator(metadata: dict) -> bool:
            return all(test(metadata) for test in tests)

        return every_operator

    def _operator(self, key: str, name: str, operand: Any) -> Predicate:
        if name == "$exists":
            if not isinstance(operand, bool):
                raise ValidationError(f"$exists on {key!r} takes true or false.")

            def exists(metadata: dict) -> bool:
                return (key in metadata) is operand

            return exists
        if name in _ORDERINGS:
            if not _is_number(operand) or not math.isfinite(operand):
                raise ValidationError(f"{name} on {key!r} takes a number.")
            compare = _ORDERINGS[name]

            def ordered(metadata: dict) -> bool:
                return key in metadata and any(
                    _is_number(value) and compare(value, operand)
                    for value in _values(metadata[key])
                )

            return ordered
        if name in ("$eq", "$ne"):
            if not _is_scalar(operand):
                raise ValidationError(
                    f"{name} on {key!r} takes a string, number or boolean."
                )
            wanted = [operand]
        elif name in ("$in", "$nin"):
            if (
                not isinstance(operand, list)
                or not operand
                or not all(_is_scalar(item) for item in operand)
            ):
                raise ValidationError(
                    f"{name} on {key!r} takes a non-empty array of values."
                )
            wanted = operand
        else:
            raise ValidationError(f"Unsupported operator {name} on {key!r}.")

        def equal(metadata: dict) -> bool:
            return key in metadata and any(
                _same(value, option)
                for value in _values(metadata[key])
                for option in wanted
            )

        if name in ("$eq", "$in"):
            return equal
        missing_matches = self.negation_matches_missing

        def not_equal(metadata: dict) -> bool:
            if key not in metadata:
                return missing_matches
            return not equal(metadata)

        return not_equal


# -- text search --------------------------------------------------------------------

_WORD = re.compile(r"[^\W_]+")
_POSSESSIVE = re.compile(r"['’]s\b")
# The usual short English stop list of search engines' English analyzers.
# fmt: off
ENGLISH_STOP_WORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into",
    "is", "it", "no", "not", "of", "on", "or", "such", "that", "the", "their", "then",
    "there", "these", "they", "this", "to", "was", "will", "with",
})
# fmt: on


def analyze(text: str, language: str | None) -> list[str]:
    """Split text into the terms BM25 counts."""
    text = text.lower()
    if language != "en":
        return _WORD.findall(text)
    words = _WORD.findall(_POSSESSIVE.sub("", text))
    return [stem_english(word) for word in words if word not in ENGLISH_STOP_WORDS]


def stem_english(word: str) -> str:
    """A small suffix stripper: enough for "hikes", "hiked" and "hiking" to meet."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            # "running" -> "runn" -> "run"
            if word[-1] == word[-2] and word[-1] not in "lsz":
                word = word[:-1]
            break
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return word


def _searchable_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return " ".join(value)
    return None


def bm25_scores(
    index: Index,
    metadata_key: str,
    language: str | None,
    query: str,
    candidate_keys,
) -> dict[str, float]:
    """Okapi BM25 of the candidates that match at least one query term."""
    documents: dict[str, Counter[str]] = {}
    lengths: dict[str, int] = {}
    for vector_key, vector in index.vectors.items():
        text = _searchable_text((vector.metadata or {}).get(metadata_key))
        if text is not None:
            terms = analyze(text, language)
            documents[vector_key] = Counter(terms)
            lengths[vector_key] = len(terms)
    query_terms = set(analyze(query, language))
    if not documents or not query_terms:
        return {}
    document_count = len(documents)
    average_length = sum(lengths.values()) / document_count
    idf = {}
    for term in query_terms:
        frequency = sum(1 for counts in documents.values() if term in counts)
        idf[term] = math.log(1 + (document_count - frequency + 0.5) / (frequency + 0.5))
    scores = {}
    for vector_key in candidate_keys:
        counts = documents.get(vector_key)
        if counts is None:
            continue
        relative_length = lengths[vector_key] / average_length if average_length else 0
        score = 0.0
        for term in query_terms:
            count = counts.get(term, 0)
            if count:
                saturation = count + BM25_K1 * (1 - BM25_B + BM25_B * relative_length)
                score += idf[term] * count * (BM25_K1 + 1) / saturation
        if score > 0:
            scores[vector_key] = score
    return scores
