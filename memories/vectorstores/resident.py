"""One user's vectors kept in memory, normalised, for exact search in one product.

A query at 100,000 vectors is one matrix-vector product (about 10 ms on one
core) instead of reading 150 MB of rows from SQLite (over half a second). The
file stays the truth: every write there carries a sequence number, and before
each query a namespace reads what changed since the sequence it has seen, so
writes of other processes show at once.
"""

import threading
from collections import OrderedDict
from collections.abc import Iterable

import numpy as np

from memories.vectorstores.base import Namespace

# Rows a matrix holds at least; full, it grows by a quarter (copying 150 MB at
# 100,000 vectors, so not often, and without doubling what a large user takes).
MINIMUM_CAPACITY = 256
GROWTH = 1.25
# Share of dead rows (deleted or replaced) above which a matrix is rebuilt.
DEAD_SHARE_TO_REBUILD = 0.25


def normalised(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class ResidentVectors:
    """A namespace's vectors as rows of a matrix, with the file sequence they
    reflect. Not thread-safe on its own: the cache's lock guards it."""

    def __init__(
        self, *, dimension: int, sequence: int, generation: str = "", capacity: int = 0
    ) -> None:
        self.dimension = dimension
        # The file's sequence number this copy reflects, and which file it is.
        self.sequence = sequence
        self.generation = generation
        self.matrix = np.zeros((capacity, dimension), dtype=np.float32)
        self.alive = np.zeros(capacity, dtype=bool)
        self.keys: list[str | None] = []
        self.row_of: dict[str, int] = {}
        self.dead = 0

    @property
    def rows(self) -> int:
        return len(self.keys)

    @property
    def nbytes(self) -> int:
        # The matrix, plus about 100 bytes a key in the list and the dict.
        return self.matrix.nbytes + 100 * len(self.keys)

    def remove(self, keys: Iterable[str]) -> None:
        for key in keys:
            row = self.row_of.pop(key, None)
            if row is not None:
                self.keys[row] = None
                self.alive[row] = False
                self.dead += 1

    def upsert(self, keys: list[str], vectors: np.ndarray) -> None:
        if not keys:
            return
        vectors = vectors.reshape(len(keys), self.dimension)
        fresh: list[int] = []
        for index, key in enumerate(keys):
            row = self.row_of.get(key)
            if row is None:
                fresh.append(index)
            else:
                self.matrix[row] = normalised(vectors[index : index + 1])
        if not fresh:
            return
        start = self.rows
        needed = start + len(fresh)
        if needed > self.matrix.shape[0]:
            capacity = max(MINIMUM_CAPACITY, needed, int(GROWTH * self.matrix.shape[0]))
            grown = np.zeros((capacity, self.dimension), dtype=np.float32)
            grown[:start] = self.matrix[:start]
            self.matrix = grown
            alive = np.zeros(capacity, dtype=bool)
            alive[:start] = self.alive[:start]
            self.alive = alive
        block = self.matrix[start:needed]
        block[:] = vectors[fresh]
        block /= np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
        self.alive[start:needed] = True
        for offset, index in enumerate(fresh):
            self.keys.append(keys[index])
            self.row_of[keys[index]] = start + offset
        if self.dead > DEAD_SHARE_TO_REBUILD * max(self.rows, 1):
            self._rebuild()

    def _rebuild(self) -> None:
        live = [row for row, key in enumerate(self.keys) if key is not None]
        self.matrix = np.ascontiguousarray(self.matrix[live])
        self.alive = np.ones(len(live), dtype=bool)
        self.keys = [self.keys[row] for row in live]
        self.row_of = {key: row for row, key in enumerate(self.keys)}
        self.dead = 0

    def search(self, queries: np.ndarray, top_k: int) -> list[list[tuple[str, float]]]:
        """The top_k (key, cosine) of each query, best first, ties by key."""
        live = self.rows - self.dead
        if live == 0 or top_k <= 0:
            return [[] for _ in range(len(queries))]
        scores = normalised(queries) @ self.matrix[: self.rows].T
        if self.dead:
            scores[:, ~self.alive[: self.rows]] = -np.inf
        count = min(top_k, live)
        results = []
        for row_scores in scores:
            best = np.argpartition(-row_scores, count - 1)[:count]
            ranked = sorted(
                ((self.keys[row], float(row_scores[row])) for row in best),
                key=lambda hit: (-hit[1], hit[0]),
            )
            results.append(ranked)
        return results


class ResidentCache:
    """Least recently used namespaces' vectors, within a byte budget."""

    def __init__(self, *, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self.lock = threading.Lock()
        self._entries: OrderedDict[Namespace, ResidentVectors] = OrderedDict()

    def get(self, namespace: Namespace) -> ResidentVectors | None:
        entry = self._entries.get(namespace)
        if entry is not None:
            self._entries.move_to_end(namespace)
        return entry

    def keep(self, namespace: Namespace, entry: ResidentVectors) -> bool:
        """Keep an entry, evicting the least recently used; False if it alone
        is over the budget (it is then not kept)."""
        self._entries.pop(namespace, None)
        if entry.nbytes > self.budget_bytes:
            return False
        self._entries[namespace] = entry
        self.trim()
        return True

    def trim(self) -> None:
        total = sum(entry.nbytes for entry in self._entries.values())
        while total > self.budget_bytes and len(self._entries) > 1:
            _, evicted = self._entries.popitem(last=False)
            total -= evicted.nbytes

    def clear(self) -> None:
        self._entries.clear()
