"""Exhaustive cosine search over vectors kept in a SQLite file.

One table keyed by (tenant, user, key): a query reads only its own user's rows
through the primary key, so it never scans another user's vectors. SQLite's WAL
journal and busy timeout let several server processes write the same file.

Queries scan a copy of the user's vectors kept in memory in half precision
(`resident`: every vector is compared, so nothing is missed), within
LTM_LOCAL_VECTOR_CACHE_MB per process. Each write takes the next number of a
sequence kept in the file; rows carry it, and deletions leave (key, number)
behind for an hour, so before each query a process reads only what changed
since it last looked, whichever process wrote it.
"""

import json
import sqlite3
import threading
import time
import uuid
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
from memories.vectorstores.resident import ResidentCache, ResidentVectors

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
    sequence INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, user_id, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS removals (
    tenant_id INTEGER NOT NULL,
    user_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    key TEXT NOT NULL,
    removed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sequence (
    only_row INTEGER PRIMARY KEY CHECK (only_row = 1),
    last INTEGER NOT NULL,
    -- Removals up to this number are no longer kept: a copy that has not seen
    -- them reloads the user's vectors.
    forgotten_through INTEGER NOT NULL,
    generation TEXT NOT NULL
);
"""
# Files written before sequences existed gain the column and its index here.
_INDEXES = """
CREATE INDEX IF NOT EXISTS vectors_by_sequence
    ON vectors (tenant_id, user_id, sequence);
CREATE INDEX IF NOT EXISTS removals_by_user
    ON removals (tenant_id, user_id, sequence);
CREATE INDEX IF NOT EXISTS removals_by_age ON removals (removed_at);
"""
# How long a deletion's key is kept for other processes' copies to catch up.
REMOVALS_KEPT_SECONDS = 3600


class LocalVectorStore:
    """Persistent exact-search vector store for one machine."""

    capabilities = StoreCapabilities(text_search=False, local_queries=True)

    def __init__(
        self,
        *,
        path: str | Path,
        dimension: int,
        model_name: str,
        cache_bytes: int = 512 * 2**20,
    ) -> None:
        self.path = Path(path)
        self.dimension = dimension
        self.model_name = model_name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._resident = ResidentCache(budget_bytes=cache_bytes)
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
            self._use_wal(connection)
            connection.execute("PRAGMA synchronous=NORMAL")
            # Deleted vectors and their metadata are overwritten, not left in
            # free pages of the file.
            connection.execute("PRAGMA secure_delete=ON")
            self._local.connection = connection
            with self._connections_lock:
                self._connections.append(connection)
        return connection

    # Switching a new file to WAL needs it alone: server processes starting at
    # once on a fresh file can get "database is locked" at once, without the
    # busy timeout's wait. The mode is kept in the file, so this is once a file.
    WAL_SWITCH_SECONDS = 10

    def _use_wal(self, connection: sqlite3.Connection) -> None:
        deadline = time.monotonic() + self.WAL_SWITCH_SECONDS
        while True:
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _write(self, write) -> None:
        """Run `write(connection, sequence)` in one transaction that takes the
        next sequence number."""
        connection = self._connection()
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("UPDATE sequence SET last = last + 1")
            (sequence,) = connection.execute("SELECT last FROM sequence").fetchone()
            write(connection, sequence)
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise VectorStoreError(f"Local vector store write failed: {exc}") from exc

    def _check_model(self) -> None:
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            self._create_schema(connection)
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

    @staticmethod
    def _create_schema(connection: sqlite3.Connection) -> None:
        """Create the tables, or bring a file of an earlier version up to date
        (in the caller's transaction)."""
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                connection.execute(statement)
        columns = {row[1] for row in connection.execute("PRAGMA table_info(vectors)")}
        if "sequence" not in columns:
            connection.execute(
                "ALTER TABLE vectors ADD COLUMN sequence INTEGER NOT NULL DEFAULT 0"
            )
        for statement in _INDEXES.split(";"):
            if statement.strip():
                connection.execute(statement)
        connection.execute(
            "INSERT OR IGNORE INTO sequence (only_row, last, forgotten_through, "
            "generation) VALUES (1, 0, 0, ?)",
            (uuid.uuid4().hex,),
        )

    def verify(self) -> None:
        """Start-up check: the file holds vectors of the configured model."""
        self._check_model()

    def ping(self) -> None:
        try:
            self._connection().execute("SELECT last FROM sequence").fetchone()
        except sqlite3.Error as exc:
            raise VectorStoreError(f"Local vector store read failed: {exc}") from exc

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
        with self._resident.lock:
            self._resident.clear()
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
        if not rows:
            return

        def write(connection: sqlite3.Connection, sequence: int) -> None:
            connection.executemany(
                "INSERT OR REPLACE INTO vectors (tenant_id, user_id, key, embedding, "
                "metadata, sequence) VALUES (?, ?, ?, ?, ?, ?)",
                [(*row, sequence) for row in rows],
            )

        self._write(write)

    def delete(self, *, namespace: Namespace, keys: list[str]) -> None:
        if not keys:
            return
        now = time.time()

        def write(connection: sqlite3.Connection, sequence: int) -> None:
            connection.executemany(
                "DELETE FROM vectors WHERE tenant_id = ? AND user_id = ? AND key = ?",
                [(namespace.tenant_id, namespace.user_id, key) for key in keys],
            )
            connection.executemany(
                "INSERT INTO removals (tenant_id, user_id, sequence, key, removed_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [
                    (namespace.tenant_id, namespace.user_id, sequence, key, now)
                    for key in keys
                ],
            )
            self._forget_old_removals(connection, now=now)

        self._write(write)

    @staticmethod
    def _forget_old_removals(connection: sqlite3.Connection, *, now: float) -> None:
        cutoff = now - REMOVALS_KEPT_SECONDS
        (newest,) = connection.execute(
            "SELECT max(sequence) FROM removals WHERE removed_at < ?", (cutoff,)
        ).fetchone()
        if newest is not None:
            connection.execute("DELETE FROM removals WHERE sequence <= ?", (newest,))
            connection.execute(
                "UPDATE sequence SET forgotten_through = max(forgotten_through, ?)",
                (newest,),
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
        min_score: float | None = None,
    ) -> list[list[VectorHit]]:
        """One query per vector, over the namespace's vectors held in memory;
        with `min_score`, only hits scoring at least that."""
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
            return self._filtered_query(
                namespace=namespace,
                queries=queries,
                top_k=top_k,
                where=where,
                min_score=min_score,
            )
        with self._resident.lock:
            resident = self._current(namespace)
            found = resident.search(queries, top_k, min_score=min_score)
            # A user over the whole budget alone is searched but not kept.
            self._resident.keep(namespace, resident)
        return _as_hits(found)

    def _current(self, namespace: Namespace) -> ResidentVectors:
        """The namespace's vectors as the file holds them now: the copy in
        memory brought up to date, or read whole when there is none, it is of
        another file, or it missed removals that are no longer kept."""
        connection = self._connection()
        scope = (namespace.tenant_id, namespace.user_id)
        kept = self._resident.get(namespace)
        try:
            connection.execute("BEGIN")
            last, forgotten_through, generation = connection.execute(
                "SELECT last, forgotten_through, generation FROM sequence"
            ).fetchone()
            if (
                kept is not None
                and kept.generation == generation
                and kept.sequence >= forgotten_through
            ):
                if kept.sequence < last:
                    removed = connection.execute(
                        "SELECT key FROM removals WHERE tenant_id = ? AND user_id = ? "
                        "AND sequence > ?",
                        (*scope, kept.sequence),
                    ).fetchall()
                    changed = connection.execute(
                        "SELECT key, embedding FROM vectors WHERE tenant_id = ? "
                        "AND user_id = ? AND sequence > ?",
                        (*scope, kept.sequence),
                    ).fetchall()
                    # A key deleted and put again is in both; its row is newer.
                    kept.remove(key for (key,) in removed)
                    self._upsert(kept, changed)
                    kept.sequence = last
                connection.execute("COMMIT")
                return kept
            resident = ResidentVectors(
                dimension=self.dimension, sequence=last, generation=generation
            )
            # In pages, so that only one page of rows is held beside the copy.
            cursor = connection.execute(
                "SELECT key, embedding FROM vectors "
                "WHERE tenant_id = ? AND user_id = ?",
                scope,
            )
            while rows := cursor.fetchmany(self.LOAD_PAGE):
                self._upsert(resident, rows)
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise VectorStoreError(f"Local vector store read failed: {exc}") from exc
        return resident

    def _upsert(self, resident: ResidentVectors, rows: list[tuple]) -> None:
        if rows:
            resident.upsert(
                [row[0] for row in rows],
                np.frombuffer(b"".join(row[1] for row in rows), dtype="<f4"),
            )

    def _filtered_query(
        self,
        *,
        namespace: Namespace,
        queries: np.ndarray,
        top_k: int,
        where: dict,
        min_score: float | None,
    ) -> list[list[VectorHit]]:
        """Filters on metadata read the rows, which only the file holds."""
        rows = [
            (key, embedding)
            for key, embedding, metadata in self._connection().execute(
                "SELECT key, embedding, metadata FROM vectors "
                "WHERE tenant_id = ? AND user_id = ?",
                (namespace.tenant_id, namespace.user_id),
            )
            if metadata_matches(json.loads(metadata), where)
        ]
        matching = ResidentVectors(dimension=self.dimension, sequence=0)
        self._upsert(matching, rows)
        found = matching.search(queries, top_k, min_score=min_score)
        return _as_hits(found)

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

    # Vectors read at a time when a user's vectors are first loaded.
    LOAD_PAGE = 4096
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


def _as_hits(found: list[list[tuple[str, float]]]) -> list[list[VectorHit]]:
    return [[VectorHit(key=key, score=score) for key, score in hits] for hits in found]


__all__ = ["LocalVectorStore", "VectorStoreError"]
