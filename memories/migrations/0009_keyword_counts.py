"""How many memories each user's keyword partition holds, kept by triggers.

The keyword ranking reads it before choosing how to rank: counting the
partition in FTS5 walks every row of the user (5 ms at 100,000 memories). A
later migration that rebuilds memories_memory on SQLite (adding a column does)
drops these triggers with the others, and must create them again.
"""

from django.db import migrations

PARTITION = "'p' || {row}.tenant_id || 'u' || lower(hex({row}.user_id))"
COUNTED = "memories_memory_fts_count"
ADD = (
    f"INSERT INTO {COUNTED} (partition, documents) "
    f"VALUES ({PARTITION.format(row='new')}, 1) "
    "ON CONFLICT (partition) DO UPDATE SET documents = documents + 1;"
)
REMOVE = (
    f"UPDATE {COUNTED} SET documents = documents - 1 "
    f"WHERE partition = {PARTITION.format(row='old')};"
)
SQLITE_FORWARD = [
    f"""CREATE TABLE {COUNTED} (
        partition TEXT PRIMARY KEY,
        documents INTEGER NOT NULL
    ) WITHOUT ROWID""",
    f"""INSERT INTO {COUNTED} (partition, documents)
    SELECT {PARTITION.format(row="m")}, count(*) FROM memories_memory m
    WHERE m.status = 'active' GROUP BY m.tenant_id, m.user_id""",
    f"""CREATE TRIGGER {COUNTED}_insert AFTER INSERT ON memories_memory
    WHEN new.status = 'active' BEGIN {ADD} END""",
    f"""CREATE TRIGGER {COUNTED}_delete AFTER DELETE ON memories_memory
    WHEN old.status = 'active' BEGIN {REMOVE} END""",
    f"""CREATE TRIGGER {COUNTED}_deactivate AFTER UPDATE OF status, tenant_id, user_id
    ON memories_memory WHEN old.status = 'active' BEGIN {REMOVE} END""",
    f"""CREATE TRIGGER {COUNTED}_activate AFTER UPDATE OF status, tenant_id, user_id
    ON memories_memory WHEN new.status = 'active' BEGIN {ADD} END""",
]
SQLITE_BACKWARD = [
    f"DROP TRIGGER {COUNTED}_activate",
    f"DROP TRIGGER {COUNTED}_deactivate",
    f"DROP TRIGGER {COUNTED}_delete",
    f"DROP TRIGGER {COUNTED}_insert",
    f"DROP TABLE {COUNTED}",
]


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        for statement in SQLITE_FORWARD:
            schema_editor.execute(statement)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        for statement in SQLITE_BACKWARD:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("memories", "0008_outbox_claims")]

    operations = [migrations.RunPython(forward, backward)]
