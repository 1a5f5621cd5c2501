"""Exact cosine search over vectors kept in a SQLite file.

One table keyed by (tenant, user, key): a query reads only its own user's rows
through the primary key, so it never scans another user's vectors. SQLite's WAL
journal and busy timeout let several server processes write the same file.
"""

import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from memories.vectorstores.base import (
    DimensionMismatchError,
    Namespace,
    StoreCapabilities,
    StoredVector,
    VectorHit,
    VectorRecord,
    VectorStoreError,
)
from memories.vectorstores.filters import filter_keys, metadata_matches

_SCHEMA = """
CREATE TABLE IF NOT EXISTS store_info (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS vectors (
    tenant_id INTEGER NOT NULL,
    user_id TEXT NOT NULL,
    key TEXT NOT NULL,
    embedding BLOB NOT NULL,
    metadata TEXT NOT NULL,
    PRIMARY KEY (tenant_id, user_id, key)
) WITHOUT ROWID;
"""


class LocalVectorStore:
    """Persistent exact-search vector store for one machine."""

    capabilities = StoreCapabilities(text_search=False, local_queries=True)

    def __init__(self, *, path: str | Path, dimension: int, model_name: str) -> None:
        self.path = Path(path)
        self.dimension = dimension
        self.model_name = model_name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._check_model()

    # -- connections -------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            # A writer holds the file for milliseconds; waiting longer means
            # the store is stalled, and the request answers 503 in good time.
            connection = sqlite3.connect(
                self.path, timeout=5, isolation_level=None, check_same_thread=False
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            # Deleted vectors and their metadata are overwritten, not left in
            # free pages of the file.
            connection.execute("PRAGMA secure_delete=ON")
            connection.executescript(_SCHEMA)
            self._local.connection = connection
            with self._connections_lock:
                self._connections.append(connection)
        return connection

    def _write(self, statement: str, rows: list[tuple]) -> None:
        connection = self._connection()
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(statement, rows)
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise VectorStoreError(f"Local vector store write failed: {exc}") from exc

    def _check_model(self) -> None:
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            stored = dict(connection.execute("SELECT name, value FROM store_info"))
            if not stored:
                connection.executemany(
                    "INSERT INTO store_info (name, value) VALUES (?, ?)",
                    [("dimension", str(self.dimension)), ("model", self.model_name)],
                )
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        if stored and (
            int(stored["dimension"]) != self.dimension
            or stored["model"] != self.model_name
        ):
            raise DimensionMismatchError(
                f"The vector store at {self.path} holds {stored['model']} vectors "
                f"of dimension {stored['dimension']}, but the configured embedder is "
                f"{self.model_name} ({self.dimension}). Re-embed into a new store "
                "path instead of mixing models."
            )

    def verify(self) -> None:
        """Start-up check: the file holds vectors of the configured model."""
        self._check_model()

    def compact(self) -> None:
        """Copy the WAL into the file and empty it.

        A deleted vector's metadata (its text) stays in the WAL's old page
        images until a checkpoint; secure_delete then leaves no copy in the
        file's free pages either.
        """
        try:
            self._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            raise VectorStoreError(
                f"Local vector store checkpoint failed: {exc}"
            ) from exc

    def close(self) -> None:
        with self._connections_lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
        self._local = threading.local()

    # -- operations --------------------------------------------------------
    def _as_blob(self, vector: np.ndarray) -> bytes:
        array = np.asarray(vector, dtype="<f4").reshape(-1)
        if array.shape[0] != self.dimension:
            raise DimensionMismatchError(
                f"Vector of dimension {array.shape[0]} given to a store of "
                f"dimension {self.dimension}."
            )
        return array.tobytes()

    def put(self, *, namespace: Namespace, records: list[VectorRecord]) -> None:
        rows = [
            (
                namespace.tenant_id,
                namespace.user_id,
                record.key,
                self._as_blob(record.vector),
                json.dumps(record.metadata, sort_keys=True),
            )
            for record in records
        ]
        if rows:
            self._write(
                "INSERT OR REPLACE INTO vectors "
                "(tenant_id, user_id, key, embedding, metadata) VALUES (?, ?, ?, ?, ?)",
                rows,
            )

    def delete(self, *, namespace: Namespace, keys: list[str]) -> None:
        rows = [(namespace.tenant_id, namespace.user_id, key) for key in keys]
        if rows:
            self._write(
                "DELETE FROM vectors WHERE tenant_id = ? AND user_id = ? AND key = ?",
                rows,
            )

    def get(self, *, namespace: Namespace, keys: list[str]) -> list[VectorRecord]:
        records = []
        connection = self._connection()
        for key in keys:
            row = connection.execute(
                "SELECT embedding, metadata FROM vectors "
                "WHERE tenant_id = ? AND user_id = ? AND key = ?",
                (namespace.tenant_id, namespace.user_id, key),
            ).fetchone()
            if row is not None:
                records.append(
                    VectorRecord(
                        key=key,
                        vector=np.frombuffer(row[0], dtype="<f4"),
                        metadata=json.loads(row[1]),
                    )
                )
        return records

    def query(
        self,
        *,
        namespace: Namespace,
        vector: np.ndarray,
        top_k: int,
        where: dict | None = None,
    ) -> list[VectorHit]:
        return self.query_many(
            namespace=namespace, vectors=[vector], top_k=top_k, where=where
        )[0]

    def hybrid_query(
        self,
        *,
        namespace: Namespace,
        vector: np.ndarray,
        text: str,
        top_k: int,
        where: dict | None = None,
    ) -> list[VectorHit]:
        raise VectorStoreError(
            "The local store has no text search: keywords are ranked by the database."
        )

    def query_many(
        self,
        *,
        namespace: Namespace,
        vectors: list[np.ndarray],
        top_k: int,
        where: dict | None = None,
    ) -> list[list[VectorHit]]:
        """One query per vector, reading the namespace's vectors once."""
        filter_keys(where)
        queries = (
            np.stack(
                [
                    np.frombuffer(self._as_blob(vector), dtype="<f4")
                    for vector in vectors
                ]
            )
            if len(vectors)
            else np.zeros((0, self.dimension), dtype=np.float32)
        )
        if where:
            rows = [
                (key, embedding)
                for key, embedding, metadata in self._connection().execute(
                    "SELECT key, embedding, metadata FROM vectors "
                    "WHERE tenant_id = ? AND user_id = ?",
                    (namespace.tenant_id, namespace.user_id),
                )
                if metadata_matches(json.loads(metadata), where)
            ]
        else:
            rows = (
                self._connection()
                .execute(
                    "SELECT key, embedding FROM vectors "
                    "WHERE tenant_id = ? AND user_id = ?",
                    (namespace.tenant_id, namespace.user_id),
                )
                .fetchall()
            )
        if not rows or top_k <= 0:
            return [[] for _ in vectors]
        keys = [row[0] for row in rows]
        matrix = np.frombuffer(b"".join(row[1] for row in rows), dtype="<f4")
        matrix = matrix.reshape(len(rows), self.dimension)
        row_norms = np.maximum(np.linalg.norm(matrix, axis=1), 1e-12)
        query_norms = np.maximum(np.linalg.norm(queries, axis=1), 1e-12)
        all_scores = (queries @ matrix.T) / np.outer(query_norms, row_norms)
        count = min(top_k, len(keys))
        results = []
        for scores in all_scores:
            best = np.argpartition(-scores, count - 1)[:count]
            best = best[np.argsort(-scores[best], kind="stable")]
            results.append(
                [VectorHit(key=keys[i], score=float(scores[i])) for i in best]
            )
        return results

    def list_keys(self, *, namespace: Namespace | None = None) -> Iterator[str]:
        connection = self._connection()
        if namespace is None:
            cursor = connection.execute("SELECT key FROM vectors")
        else:
            cursor = connection.execute(
                "SELECT key FROM vectors WHERE tenant_id = ? AND user_id = ?",
                (namespace.tenant_id, namespace.user_id),
            )
        for (key,) in cursor:
            yield key

    def count(self, *, namespace: Namespace | None = None) -> int:
        connection = self._connection()
        if namespace is None:
            (count,) = connection.execute("SELECT COUNT(*) FROM vectors").fetchone()
        else:
            (count,) = connection.execute(
                "SELECT COUNT(*) FROM vectors WHERE tenant_id = ? AND user_id = ?",
                (namespace.tenant_id, namespace.user_id),
            ).fetchone()
        return count

    # Vectors read per query while scanning; each page starts after the last
    # (tenant, user, key) of the one before.
    SCAN_PAGE = 500
    _SCAN_ALL_FIRST = (
        "SELECT tenant_id, user_id, key, metadata, CASE WHEN ? THEN embedding END "
        "FROM vectors ORDER BY tenant_id, user_id, key LIMIT ?"
    )
    _SCAN_ALL_NEXT = (
        "SELECT tenant_id, user_id, key, metadata, CASE WHEN ? THEN embedding END "
        "FROM vectors WHERE (tenant_id, user_id, key) > (?, ?, ?) "
        "ORDER BY tenant_id, user_id, key LIMIT ?"
    )
    _SCAN_TENANT_FIRST = (
        "SELECT tenant_id, user_id, key, metadata, CASE WHEN ? THEN embedding END "
        "FROM vectors WHERE tenant_id = ? ORDER BY user_id, key LIMIT ?"
    )
    _SCAN_TENANT_NEXT = (
        "SELECT tenant_id, user_id, key, metadata, CASE WHEN ? THEN embedding END "
        "FROM vectors WHERE tenant_id = ? AND (user_id, key) > (?, ?) "
        "ORDER BY user_id, key LIMIT ?"
    )

    def scan(
        self, *, tenant_id: int | None = None, with_vectors: bool = False
    ) -> Iterator[StoredVector]:
        """Every vector, or one tenant's, in key order, read a page at a time.

        Pages rather than one open cursor: a cursor would hold a read snapshot
        (and keep the WAL from being checkpointed) for the whole listing, and a
        write on this connection between two items (reconciliation deletes
        orphans as it goes) would make what the cursor returns next undefined.
        """
        if tenant_id is None:
            first, following, scope = self._SCAN_ALL_FIRST, self._SCAN_ALL_NEXT, ()
        else:
            first, following = self._SCAN_TENANT_FIRST, self._SCAN_TENANT_NEXT
            scope = (tenant_id,)
        connection = self._connection()
        rows = connection.execute(
            first, (with_vectors, *scope, self.SCAN_PAGE)
        ).fetchall()
        while rows:
            for row_tenant, user_id, key, metadata, embedding in rows:
                yield StoredVector(
                    namespace=Namespace(tenant_id=row_tenant, user_id=user_id),
                    key=key,
                    metadata=json.loads(metadata),
                    vector=(
                        np.frombuffer(embedding, dtype="<f4")
                        if embedding is not None
                        else None
                    ),
                )
            if len(rows) < self.SCAN_PAGE:
                return
            last_tenant, last_user, last_key = rows[-1][:3]
            after = (last_tenant,) if tenant_id is None else ()
            rows = connection.execute(
                following,
                (with_vectors, *scope, *after, last_user, last_key, self.SCAN_PAGE),
            ).fetchall()


__all__ = ["LocalVectorStore", "VectorStoreError"]
