"""Leave no copy of forgotten text in the files that keep deleted bytes.

SQLite overwrites deleted rows in place (secure_delete), but its WAL keeps the
old page images until a checkpoint, and FTS5 before 3.44 keeps a deleted
document's terms in its segments until they merge. After every forget, once it
has committed, the full-text segments are merged and the WAL emptied; the local
vector store empties its own WAL after it deletes vectors.
"""

from django.db import connection, transaction

from memories.vectorstores import get_vector_store


def keyword_index_compact() -> None:
    """Rewrite SQLite's full-text index without what deleted rows left in it.

    'optimize' merges every segment now: about a second per million indexed
    memories, nothing when already merged. On PostgreSQL the keyword document
    is a column of the row, and its old versions go with the row's (vacuum).
    """
    if connection.vendor != "sqlite":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO memories_memory_fts(memories_memory_fts) VALUES('optimize')"
        )


def database_compact() -> None:
    """Merge the full-text segments and empty the database's WAL (SQLite)."""
    keyword_index_compact()
    # SQLite refuses a checkpoint inside a transaction ("database table is
    # locked"); the next forget outside one finishes it, as does one that
    # readers kept from finishing.
    if connection.vendor == "sqlite" and not connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def storage_compact() -> None:
    """Both databases' leftovers: the memories' and the local vector store's."""
    database_compact()
    get_vector_store().compact()


def compact_after_commit() -> None:
    """Compact once the current transaction commits (once, however many
    forgets it holds; a rollback drops it with the rest)."""
    if any(
        registered[1] is database_compact for registered in connection.run_on_commit
    ):
        return
    transaction.on_commit(database_compact, robust=True)
