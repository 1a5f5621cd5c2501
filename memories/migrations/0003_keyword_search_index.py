"""Full-text indexes for keyword search: SQLite FTS5, PostgreSQL tsvector + GIN.

Only active memories are indexed. The partition token confines an FTS5 query to
one user's documents; PostgreSQL filters by (tenant, user) through its b-tree.
"""

from django.db import migrations

SQLITE_PARTITION = "'p' || {row}.tenant_id || 'u' || lower(hex({row}.user_id))"
SQLITE_FORWARD = [
    "CREATE VIRTUAL TABLE memories_memory_fts USING fts5("
    "partition, body, context, tokenize = 'porter unicode61')",
    f"""CREATE TRIGGER memories_memory_fts_insert AFTER INSERT ON memories_memory
    WHEN new.status = 'active' BEGIN
        INSERT INTO memories_memory_fts (rowid, partition, body, context)
        VALUES (new.id, {SQLITE_PARTITION.format(row="new")},
                new.speaker || ' ' || new.text, new.context_text);
    END""",
    """CREATE TRIGGER memories_memory_fts_delete AFTER DELETE ON memories_memory
    BEGIN
        DELETE FROM memories_memory_fts WHERE rowid = old.id;
    END""",
    f"""CREATE TRIGGER memories_memory_fts_update AFTER UPDATE ON memories_memory
    BEGIN
        DELETE FROM memories_memory_fts WHERE rowid = old.id;
        INSERT INTO memories_memory_fts (rowid, partition, body, context)
        SELECT new.id, {SQLITE_PARTITION.format(row="new")},
               new.speaker || ' ' || new.text, new.context_text
        WHERE new.status = 'active';
    END""",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER memories_memory_fts_update",
    "DROP TRIGGER memories_memory_fts_delete",
    "DROP TRIGGER memories_memory_fts_insert",
    "DROP TABLE memories_memory_fts",
]
POSTGRES_FORWARD = [
    """ALTER TABLE memories_memory ADD COLUMN search_vector tsvector
    GENERATED ALWAYS AS (
        setweight(to_tsvector('english'::regconfig,
                              coalesce(speaker, '') || ' ' || coalesce(text, '')), 'A')
        || setweight(to_tsvector('english'::regconfig, coalesce(context_text, '')), 'B')
    ) STORED""",
    "CREATE INDEX memories_memory_search_vector ON memories_memory "
    "USING gin (search_vector) WHERE status = 'active'",
]
POSTGRES_BACKWARD = [
    "DROP INDEX memories_memory_search_vector",
    "ALTER TABLE memories_memory DROP COLUMN search_vector",
]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        statements = statements_by_vendor.get(schema_editor.connection.vendor)
        if statements is None:
            raise RuntimeError(
                f"Keyword search needs SQLite or PostgreSQL, not "
                f"{schema_editor.connection.vendor}."
            )
        for statement in statements:
            schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [("memories", "0002_provenance_and_context")]

    operations = [
        migrations.RunPython(
            _run({"sqlite": SQLITE_FORWARD, "postgresql": POSTGRES_FORWARD}),
            _run({"sqlite": SQLITE_BACKWARD, "postgresql": POSTGRES_BACKWARD}),
        )
    ]
