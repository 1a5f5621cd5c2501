"""The interface every vector store implements."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class VectorStoreError(RuntimeError):
    """The vector store failed or was asked something it cannot do."""


class DimensionMismatchError(VectorStoreError):
    """The index was built for vectors of another model or dimension."""


@dataclass(frozen=True)
class Namespace:
    """The partition of one end user of one tenant; nothing crosses it."""

    tenant_id: int
    user_id: str


@dataclass(frozen=True)
class VectorRecord:
    key: str
    vector: np.ndarray
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class VectorHit:
    key: str
    score: float


@dataclass(frozen=True)
class StoreCapabilities:
    """What a store can do beyond putting, deleting and querying vectors."""

    # It ranks text itself (BM25) and fuses it with vectors: `hybrid_query`.
    text_search: bool = False
    # A query reads local data: asking one per new fact costs no network call.
    local_queries: bool = True


@dataclass(frozen=True)
class StoredVector:
    """One vector as found by listing the index (for reconciliation)."""

    namespace: Namespace
    key: str
    metadata: dict
    vector: np.ndarray | None = None


class VectorStore(Protocol):
    """Vectors stored by key inside (tenant, user) namespaces; cosine similarity.

    `where` is a metadata filter in the S3 Vectors syntax ({"key": value},
    $eq $ne $gt $gte $lt $lte $in $nin $exists $and $or) over filterable keys.
    """

    dimension: int
    model_name: str
    capabilities: StoreCapabilities

    def put(self, *, namespace: Namespace, records: list[VectorRecord]) -> None: ...

    def delete(self, *, namespace: Namespace, keys: list[str]) -> None: ...

    def get(self, *, namespace: Namespace, keys: list[str]) -> list[VectorRecord]: ...

    def query(
        self,
        *,
        namespace: Namespace,
        vector: np.ndarray,
        top_k: int,
        where: dict | None = None,
    ) -> list[VectorHit]: ...

    def hybrid_query(
        self,
        *,
        namespace: Namespace,
        vector: np.ndarray,
        text: str,
        top_k: int,
        where: dict | None = None,
    ) -> list[VectorHit]: ...

    def query_many(
        self,
        *,
        namespace: Namespace,
        vectors: list[np.ndarray],
        top_k: int,
        where: dict | None = None,
        min_score: float | None = None,
    ) -> list[list[VectorHit]]:
        """Several queries at once; with `min_score`, only hits scoring at
        least that (a store may then answer without comparing every vector)."""
        ...

    def list_keys(self, *, namespace: Namespace | None = None) -> Iterator[str]: ...

    def scan(
        self, *, tenant_id: int | None = None, with_vectors: bool = False
    ) -> Iterator[StoredVector]: ...

    def count(self, *, namespace: Namespace | None = None) -> int: ...

    def verify(self) -> None:
        """Raise if the store cannot serve the configured embedder."""
        ...

    def ping(self) -> None:
        """One cheap read; raises VectorStoreError when the store cannot answer."""
        ...

    def compact(self) -> None:
        """Drop what deleted vectors left in the store's files (journals)."""
        ...

    def close(self) -> None: ...
