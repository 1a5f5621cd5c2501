"""Amazon S3 Vectors as the vector store, through boto3's `s3vectors` client.

Layout: one vector bucket (a setting); one index per tenant, named
`{prefix}-t{tenant_id}`, created on first use or by `manage.py setup_vector_store`,
with the configured embedder's dimension, cosine distance, and the embedding
model's name as an index tag so that an index of another model is refused.
Inside a tenant's index every vector's key is `{user}/{key}`, where `{user}` is a
digest of the end user's id: a key sent for one user can never address another
user's vector, and no call needs a lookup first. `user_id` is filterable metadata
and every query filters on it. The memory text (`text`) and its keyword document
(`keywords`, with BM25 full-text search in ENHANCED indexes) are non-filterable
keys, which lifts them out of the 2 KB filterable-metadata limit.

Limits are checked before any call (see FIELD_NOTES): 500 vectors per put or
delete, 100 keys per get, topK 100, 2 KB filterable and 40 KB total metadata.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ltm_project.deadline import SHORTEST_CALL_SECONDS, time_left
from memories.vectorstores.base import (
    DimensionMismatchError,
    Namespace,
    StoreCapabilities,
    StoredVector,
    VectorHit,
    VectorRecord,
    VectorStoreError,
)
from memories.vectorstores.filters import filter_keys

logger = logging.getLogger(__name__)

PUT_BATCH = 500
DELETE_BATCH = 500
GET_BATCH = 100
MAX_TOP_K = 100
QUERY_THREADS = 8
LIST_PAGE = 1000
MAX_SEGMENTS = 16
MAX_METADATA_BYTES = 40 * 1024
MAX_FILTERABLE_BYTES = 2 * 1024
MAX_METADATA_KEYS = 50
MAX_KEY_CHARS = 1024
TEXT_KEY = "text"
KEYWORDS_KEY = "keywords"
NON_FILTERABLE_KEYS = [TEXT_KEY, KEYWORDS_KEY]
MODEL_TAG = "ltm-embedding-model"
# Control characters never reach a user id through the API.
UNNAMED_USER = "\x00unnamed:"
_INDEX_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_NOT_FOUND = {"NotFoundException", "ResourceNotFoundException"}


class S3VectorsLimitError(VectorStoreError):
    """A request S3 Vectors would refuse, caught before it is sent."""


class IndexMissingError(VectorStoreError):
    """The tenant's index does not exist (and may not be created here)."""


def _user_prefix(user_id: str) -> str:
    return hashlib.sha256(user_id.encode()).hexdigest()[:24]


def _json_bytes(values: dict) -> int:
    return len(json.dumps(values, separators=(",", ":"), ensure_ascii=False).encode())


class S3VectorsStore:
    """An index per tenant; users kept apart by key and by filter."""

    def __init__(
        self,
        *,
        bucket: str,
        dimension: int,
        model_name: str,
        index_prefix: str = "ltm",
        region: str | None = None,
        endpoint_url: str | None = None,
        create_indexes: bool = True,
        text_search: bool = True,
        list_segments: int = 4,
        max_attempts: int = 5,
        retry_mode: str = "standard",
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        client=None,
    ) -> None:
        if not bucket:
            raise VectorStoreError(
                "LTM_VECTOR_STORE=s3vectors needs LTM_S3VECTORS_BUCKET."
            )
        if not _INDEX_NAME.match(f"{index_prefix}-t1"):
            raise VectorStoreError(
                f"LTM_S3VECTORS_INDEX_PREFIX {index_prefix!r}: lowercase letters, "
                "digits, hyphens and dots, starting with a letter or digit."
            )
        self.bucket = bucket
        self.dimension = dimension
        self.model_name = model_name
        self.index_prefix = index_prefix
        self.create_indexes = create_indexes
        self.capabilities = StoreCapabilities(
            text_search=text_search, local_queries=False
        )
        self.list_segments = max(1, min(MAX_SEGMENTS, list_segments))
        self._make_client = None
        if client is None:
            import boto3
            from botocore.config import Config

            def make_client(attempts: int, connect: float, read: float):
                return boto3.client(
                    "s3vectors",
                    region_name=region or None,
                    endpoint_url=endpoint_url or None,
                    config=Config(
                        # Attempts in all, the first included.
                        retries={"total_max_attempts": attempts, "mode": retry_mode},
                        connect_timeout=connect,
                        read_timeout=read,
                    ),
                )

            client = make_client(max_attempts, connect_timeout, read_timeout)
            self._make_client = make_client
        self.client = client
        # What one call may take with every attempt: more than a request has
        # left, and the call gets a client with one shorter attempt.
        self._longest_call = max_attempts * (connect_timeout + read_timeout)
        self._connect_timeout = connect_timeout
        self._short_clients: dict[float, object] = {}
        self._ready: dict[str, str] = {}  # index name -> index mode
        self._ready_lock = threading.Lock()
        self._classic_warned: set[str] = set()

    # -- indexes -----------------------------------------------------------
    def index_name(self, tenant_id: int) -> str:
        return f"{self.index_prefix}-t{tenant_id}"

    def _call(self, operation: str, **params):
        from botocore.exceptions import BotoCoreError, ClientError

        client = self._client_for_time_left()
        try:
            return getattr(client, operation)(vectorBucketName=self.bucket, **params)
        except ClientError as exc:
            raise VectorStoreError(
                f"S3 Vectors {operation} failed: "
                f"{exc.response.get('Error', {}).get('Code')}: {exc}"
            ) from exc
        except BotoCoreError as exc:
            raise VectorStoreError(f"S3 Vectors {operation} failed: {exc}") from exc

    def _client_for_time_left(self):
        """The client whose timeouts fit in what is left of the request."""
        left = time_left()
        if left is None or left >= self._longest_call or self._make_client is None:
            return self.client
        if left < SHORTEST_CALL_SECONDS:
            raise VectorStoreError(
                "S3 Vectors not called: no time left of this request's budget."
            )
        # Half seconds, so that a few clients serve every request.
        seconds = max(SHORTEST_CALL_SECONDS, int(left * 2) / 2)
        client = self._short_clients.get(seconds)
        if client is None:
            connect = min(self._connect_timeout, seconds / 2)
            client = self._make_client(1, connect, seconds - connect)
            self._short_clients[seconds] = client
        return client

    def _error_code(self, exc: BaseException) -> str | None:
        cause = exc.__cause__
        response = getattr(cause, "response", None) or {}
        return response.get("Error", {}).get("Code")

    def ensure_index(self, tenant_id: int, *, create: bool | None = None) -> str:
        """Check (and create if allowed) a tenant's index; returns its mode."""
        name = self.index_name(tenant_id)
        mode = self._ready.get(name)
        if mode is not None:
            return mode
        with self._ready_lock:
            if name in self._ready:
                return self._ready[name]
            try:
                index = self._call("get_index", indexName=name)["index"]
            except VectorStoreError as exc:
                if self._error_code(exc) not in _NOT_FOUND:
                    raise
                if not (self.create_indexes if create is None else create):
                    raise IndexMissingError(
                        f"S3 Vectors index {name} does not exist: run "
                        "`manage.py setup_vector_store`."
                    ) from exc
                index = self._create_index(name)
            self._check_index(index)
            mode = index.get("indexMode") or "CLASSIC"
            self._ready[name] = mode
            return mode

    def _create_index(self, name: str) -> dict:
        metadata_configuration = {"nonFilterableMetadataKeys": NON_FILTERABLE_KEYS}
        if self.capabilities.text_search:
            metadata_configuration["textSearchConfigurations"] = [
                {"metadataKey": KEYWORDS_KEY, "language": "en"}
            ]
        logger.info("Creating S3 Vectors index %s/%s", self.bucket, name)
        try:
            self._call(
                "create_index",
                indexName=name,
                dataType="float32",
                dimension=self.dimension,
                distanceMetric="cosine",
                metadataConfiguration=metadata_configuration,
                tags={MODEL_TAG: self.model_name},
            )
        except VectorStoreError as exc:
            # Another process created it first: use theirs.
            if self._error_code(exc) != "ConflictException":
                raise
        return self._call("get_index", indexName=name)["index"]

    def _check_index(self, index: dict) -> None:
        name = index["indexName"]
        if index.get("dimension") != self.dimension:
            raise DimensionMismatchError(
                f"S3 Vectors index {name} holds vectors of dimension "
                f"{index.get('dimension')}; the configured embedder "
                f"{self.model_name} makes {self.dimension}. Use another "
                "LTM_S3VECTORS_INDEX_PREFIX instead of mixing models."
            )
        if index.get("distanceMetric") != "cosine":
            raise VectorStoreError(f"S3 Vectors index {name} is not a cosine index.")
        arn = index.get("indexArn")
        if arn:
            from botocore.exceptions import BotoCoreError, ClientError

            try:
                tags = self.client.list_tags_for_resource(resourceArn=arn)
            except (BotoCoreError, ClientError) as exc:
                raise VectorStoreError(
                    f"S3 Vectors ListTagsForResource on {name} failed: {exc}"
                ) from exc
            stored_model = tags.get("tags", {}).get(MODEL_TAG)
            if stored_model and stored_model != self.model_name:
                raise DimensionMismatchError(
                    f"S3 Vectors index {name} holds {stored_model} vectors; the "
                    f"configured embedder is {self.model_name}. Use another "
                    "LTM_S3VECTORS_INDEX_PREFIX instead of mixing models."
                )

    def verify(self) -> None:
        """Start-up check: the bucket exists and its indexes suit the embedder.

        Every index of this prefix is made from the same settings, so one sample
        shows a change of model; the rest are checked when first used.
        """
        self._call("get_vector_bucket")
        response = self._call(
            "list_indexes", prefix=f"{self.index_prefix}-t", maxResults=1
        )
        for index in response.get("indexes", []):
            name = index["indexName"]
            self._check_index(self._call("get_index", indexName=name)["index"])

    def ping(self) -> None:
        self._call("get_vector_bucket")

    # -- keys and metadata -------------------------------------------------
    def _physical_key(self, namespace: Namespace, key: str) -> str:
        prefix = (
            namespace.user_id[len(UNNAMED_USER) :]
            if namespace.user_id.startswith(UNNAMED_USER)
            else _user_prefix(namespace.user_id)
        )
        physical = f"{prefix}/{key}" if prefix else key
        if not key or len(physical) > MAX_KEY_CHARS:
            raise S3VectorsLimitError(
                f"Vector keys are 1 to {MAX_KEY_CHARS - 25} characters here."
            )
        return physical

    @staticmethod
    def _logical_key(physical: str) -> str:
        return physical.split("/", 1)[1] if "/" in physical else physical

    def _metadata(self, namespace: Namespace, metadata: dict) -> dict:
        values = {
            key: value
            for key, value in metadata.items()
            if value is not None and key not in ("tenant_id", "user_id")
        }
        values["tenant_id"] = namespace.tenant_id
        values["user_id"] = namespace.user_id
        if len(values) > MAX_METADATA_KEYS:
            raise S3VectorsLimitError(
                f"{len(values)} metadata keys; S3 Vectors takes {MAX_METADATA_KEYS}."
            )
        filterable = {k: v for k, v in values.items() if k not in NON_FILTERABLE_KEYS}
        if _json_bytes(filterable) > MAX_FILTERABLE_BYTES:
            raise S3VectorsLimitError(
                "Filterable metadata over S3 Vectors' 2 KB limit: "
                f"{_json_bytes(filterable)} bytes."
            )
        if _json_bytes(values) > MAX_METADATA_BYTES and KEYWORDS_KEY in values:
            # The keyword document is derived and may be shortened; the text may not.
            spare = MAX_METADATA_BYTES - _json_bytes(
                {k: v for k, v in values.items() if k != KEYWORDS_KEY}
            )
            encoded = values[KEYWORDS_KEY].encode()[: max(0, spare - 32)]
            values[KEYWORDS_KEY] = encoded.decode(errors="ignore")
        if _json_bytes(values) > MAX_METADATA_BYTES:
            raise S3VectorsLimitError(
                f"Metadata over S3 Vectors' 40 KB limit: {_json_bytes(values)} bytes."
            )
        return values

    def _vector_data(self, vector: np.ndarray) -> dict:
        array = np.asarray(vector, dtype=np.float32).reshape(-1)
        if array.shape[0] != self.dimension:
            raise DimensionMismatchError(
                f"Vector of dimension {array.shape[0]} given to a store of "
                f"dimension {self.dimension}."
            )
        if not np.all(np.isfinite(array)):
            raise S3VectorsLimitError("Vectors must hold finite numbers.")
        return {"float32": array.tolist()}

    def _user_filter(self, namespace: Namespace, where: dict | None) -> dict:
        keys = filter_keys(where)
        refused = keys & set(NON_FILTERABLE_KEYS)
        if refused:
            raise S3VectorsLimitError(
                f"Not filterable in S3 Vectors: {', '.join(sorted(refused))}."
            )
        own = {"user_id": {"$eq": namespace.user_id}}
        return {"$and": [own, where]} if where else own

    # -- operations --------------------------------------------------------
    def put(self, *, namespace: Namespace, records: list[VectorRecord]) -> None:
        # Everything is checked before the first call: a bad record sends nothing.
        vectors = [
            {
                "key": self._physical_key(namespace, record.key),
                "data": self._vector_data(record.vector),
                "metadata": self._metadata(namespace, record.metadata),
            }
            for record in records
        ]
        if not vectors:
            return
        name = self.index_name(namespace.tenant_id)
        self.ensure_index(namespace.tenant_id)
        for start in range(0, len(vectors), PUT_BATCH):
            self._call(
                "put_vectors",
                indexName=name,
                vectors=vectors[start : start + PUT_BATCH],
            )

    def delete(self, *, namespace: Namespace, keys: list[str]) -> None:
        physical = [self._physical_key(namespace, key) for key in keys]
        if not physical:
            return
        name = self.index_name(namespace.tenant_id)
        try:
            self.ensure_index(namespace.tenant_id, create=False)
        except IndexMissingError:
            return
        for start in range(0, len(physical), DELETE_BATCH):
            self._call(
                "delete_vectors",
                indexName=name,
                keys=physical[start : start + DELETE_BATCH],
            )

    def get(self, *, namespace: Namespace, keys: list[str]) -> list[VectorRecord]:
        physical = [self._physical_key(namespace, key) for key in keys]
        if not physical:
            return []
        name = self.index_name(namespace.tenant_id)
        try:
            self.ensure_index(namespace.tenant_id, create=False)
        except IndexMissingError:
            return []
        found: dict[str, VectorRecord] = {}
        for start in range(0, len(physical), GET_BATCH):
            response = self._call(
                "get_vectors",
                indexName=name,
                keys=physical[start : start + GET_BATCH],
                returnData=True,
                returnMetadata=True,
            )
            for item in response.get("vectors", []):
                metadata = item.get("metadata") or {}
                if metadata.get("user_id") != namespace.user_id:
                    continue
                key = self._logical_key(item["key"])
                found[key] = VectorRecord(
                    key=key,
                    vector=np.asarray(item["data"]["float32"], dtype=np.float32),
                    metadata=metadata,
                )
        return [found[key] for key in keys if key in found]

    def _query(self, namespace: Namespace, top_k: int, **params) -> list[VectorHit]:
        if top_k <= 0:
            return []
        name = self.index_name(namespace.tenant_id)
        try:
            self.ensure_index(namespace.tenant_id)
        except IndexMissingError:
            return []
        response = self._call(
            "query_vectors",
            indexName=name,
            topK=min(top_k, MAX_TOP_K),
            returnDistance=True,
            **params,
        )
        hits = []
        for item in response.get("vectors", []):
            distance = item.get("distance")
            score = 1.0 - distance if distance is not None else 0.0
            hits.append(VectorHit(key=self._logical_key(item["key"]), score=score))
        return hits

    def query(
        self,
        *,
        namespace: Namespace,
        vector: np.ndarray,
        top_k: int,
        where: dict | None = None,
    ) -> list[VectorHit]:
        return self._query(
            namespace,
            top_k,
            queryVector=self._vector_data(vector),
            filter=self._user_filter(namespace, where),
        )

    def query_many(
        self,
        *,
        namespace: Namespace,
        vectors: list[np.ndarray],
        top_k: int,
        where: dict | None = None,
        min_score: float | None = None,
    ) -> list[list[VectorHit]]:
        """One QueryVectors call per vector (S3 has no batch query), side by side."""

        def one(vector: np.ndarray) -> list[VectorHit]:
            hits = self.query(
                namespace=namespace, vector=vector, top_k=top_k, where=where
            )
            if min_score is None:
                return hits
            return [hit for hit in hits if hit.score >= min_score]

        if len(vectors) <= 1:
            return [one(vector) for vector in vectors]
        try:
            self.ensure_index(namespace.tenant_id)  # once, before the threads start
        except IndexMissingError:
            return [[] for _ in vectors]
        with ThreadPoolExecutor(min(QUERY_THREADS, len(vectors))) as pool:
            return list(pool.map(one, vectors))

    def hybrid_query(
        self,
        *,
        namespace: Namespace,
        vector: np.ndarray,
        text: str,
        top_k: int,
        where: dict | None = None,
    ) -> list[VectorHit]:
        """Vector similarity and BM25 over the keyword document, fused by S3."""
        try:
            mode = self.ensure_index(namespace.tenant_id)
        except IndexMissingError:
            return []
        if mode != "ENHANCED" or not self.capabilities.text_search or not text.strip():
            name = self.index_name(namespace.tenant_id)
            if mode != "ENHANCED" and name not in self._classic_warned:
                self._classic_warned.add(name)
                logger.warning(
                    "S3 Vectors index %s is in %s mode: no full-text search there, "
                    "recall falls back to vector search alone.",
                    name,
                    mode,
                )
            return self.query(
                namespace=namespace, vector=vector, top_k=top_k, where=where
            )
        return self._query(
            namespace,
            top_k,
            queryVector=self._vector_data(vector),
            queryTexts=[{"text": text[:1000], "metadataKey": KEYWORDS_KEY}],
            filter=self._user_filter(namespace, where),
        )

    def _has_index(self, tenant_id: int) -> bool:
        try:
            self.ensure_index(tenant_id, create=False)
        except IndexMissingError:
            return False
        return True

    # -- listing -----------------------------------------------------------
    def _tenant_indexes(self, tenant_id: int | None) -> list[tuple[int, str]]:
        if tenant_id is not None:
            return (
                [(tenant_id, self.index_name(tenant_id))]
                if self._has_index(tenant_id)
                else []
            )
        indexes = []
        pattern = re.compile(rf"^{re.escape(self.index_prefix)}-t(\d+)$")
        params: dict = {"prefix": f"{self.index_prefix}-t"}
        while True:
            response = self._call("list_indexes", **params)
            for index in response.get("indexes", []):
                match = pattern.match(index["indexName"])
                if match:
                    indexes.append((int(match.group(1)), index["indexName"]))
            token = response.get("nextToken")
            if not token:
                return indexes
            params["nextToken"] = token

    def scan(
        self, *, tenant_id: int | None = None, with_vectors: bool = False
    ) -> Iterator[StoredVector]:
        """Every vector of one tenant or all, read by parallel segments and pages."""
        for index_tenant, name in self._tenant_indexes(tenant_id):
            for item in self._list_index(name, with_vectors=with_vectors):
                metadata = item.get("metadata") or {}
                vector = (
                    np.asarray(item["data"]["float32"], dtype=np.float32)
                    if with_vectors and item.get("data")
                    else None
                )
                yield StoredVector(
                    namespace=Namespace(
                        tenant_id=index_tenant,
                        user_id=self._listed_user(item["key"], metadata),
                    ),
                    key=self._logical_key(item["key"]),
                    metadata=metadata,
                    vector=vector,
                )

    @staticmethod
    def _listed_user(physical: str, metadata: dict) -> str:
        """The user a listed vector is addressed by.

        A vector whose metadata does not name the user its key belongs to (written
        by something else, or damaged) gets a placeholder user that still
        addresses its key, so that reconciliation can delete it.
        """
        prefix = physical.split("/", 1)[0] if "/" in physical else ""
        user_id = metadata.get("user_id")
        if isinstance(user_id, str) and _user_prefix(user_id) == prefix:
            return user_id
        return f"{UNNAMED_USER}{prefix}"

    def _list_index(self, name: str, *, with_vectors: bool) -> Iterator[dict]:
        pages: queue.Queue = queue.Queue(maxsize=self.list_segments * 2)
        stop = threading.Event()
        done = object()

        def hand_over(item) -> bool:
            while not stop.is_set():
                try:
                    pages.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def read_segment(segment: int) -> None:
            params = {
                "indexName": name,
                "maxResults": LIST_PAGE,
                "segmentCount": self.list_segments,
                "segmentIndex": segment,
                "returnMetadata": True,
                "returnData": with_vectors,
            }
            try:
                while True:
                    response = self._call("list_vectors", **params)
                    if not hand_over(response.get("vectors", [])):
                        return
                    token = response.get("nextToken")
                    if not token:
                        break
                    params["nextToken"] = token
            except Exception as exc:  # noqa: BLE001 - handed to the reader
                hand_over(exc)
            finally:
                hand_over(done)

        pool = ThreadPoolExecutor(self.list_segments)
        try:
            for segment in range(self.list_segments):
                pool.submit(read_segment, segment)
            finished = 0
            while finished < self.list_segments:
                page = pages.get()
                if page is done:
                    finished += 1
                elif isinstance(page, Exception):
                    raise page
                else:
                    yield from page
        finally:
            # A reader that stops early must not leave segments blocked.
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)

    def list_keys(self, *, namespace: Namespace | None = None) -> Iterator[str]:
        tenant_id = namespace.tenant_id if namespace else None
        for stored in self.scan(tenant_id=tenant_id):
            if namespace is None or stored.namespace == namespace:
                yield stored.key

    def count(self, *, namespace: Namespace | None = None) -> int:
        return sum(1 for _ in self.list_keys(namespace=namespace))

    def compact(self) -> None:
        """Nothing to do: S3 Vectors keeps no journal of ours."""

    def close(self) -> None:
        self._ready.clear()


__all__ = ["IndexMissingError", "S3VectorsLimitError", "S3VectorsStore"]
