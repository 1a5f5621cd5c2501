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


class VectorStore(Protocol):
    """Vectors stored by key inside (tenant, user) namespaces; cosine similarity."""

    dimension: int

    def put(self, *, namespace: Namespace, records: list[VectorRecord]) -> None: ...

    def delete(self, *, namespace: Namespace, keys: list[str]) -> None: ...

    def get(self, *, namespace: Namespace, keys: list[str]) -> list[VectorRecord]: ...

    def query(
        self, *, namespace: Namespace, vector: np.ndarray, top_k: int
    ) -> list[VectorHit]: ...

    def query_many(
        self, *, namespace: Namespace, vectors: list[np.ndarray], top_k: int
    ) -> list[list[VectorHit]]: ...

    def list_keys(self, *, namespace: Namespace | None = None) -> Iterator[str]: ...

    def close(self) -> None: ...
