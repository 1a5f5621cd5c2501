"""How many active memories each user has, kept by triggers for the keyword
ranking's weights.

Counting them at each search reads every row of the user: FTS5 walks the
partition (5 ms at 100,000 memories), PostgreSQL scans the table (40 ms). On
SQLite the count is kept per keyword partition, by row triggers; a later
migration that rebuilds memories_memory there (adding a column does) drops them
with the others and must create them again. On PostgreSQL, per (tenant, user),
by statement triggers that read the changed rows all at once, so that a bulk
insert or an erasure of 100,000 memories updates each count once.
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


POSTGRES_COUNTED = "memories_keyword_count"
POSTGRES_FORWARD = [
    f"""CREATE TABLE {POSTGRES_COUNTED} (
        tenant_id bigint NOT NULL,
        user_id varchar(255) NOT NULL,
        documents bigint NOT NULL,
        PRIMARY KEY (tenant_id, user_id)
    )""",
    f"""INSERT INTO {POSTGRES_COUNTED} (tenant_id, user_id, documents)
    SELECT tenant_id, user_id, count(*) FROM memories_memory
    WHERE status = 'active' GROUP BY tenant_id, user_id""",
    f"""CREATE FUNCTION {POSTGRES_COUNTED}_follow() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            UPDATE {POSTGRES_COUNTED} c SET documents = c.documents - gone.n
            FROM (SELECT tenant_id, user_id, count(*) AS n FROM old_rows
                  WHERE status = 'active' GROUP BY tenant_id, user_id) gone
            WHERE c.tenant_id = gone.tenant_id AND c.user_id = gone.user_id;
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            INSERT INTO {POSTGRES_COUNTED} (tenant_id, user_id, documents)
            SELECT tenant_id, user_id, count(*) FROM new_rows
            WHERE status = 'active' GROUP BY tenant_id, user_id
            ORDER BY tenant_id, user_id
            ON CONFLICT (tenant_id, user_id)
            DO UPDATE SET documents = {POSTGRES_COUNTED}.documents
                + EXCLUDED.documents;
        END IF;
        RETURN NULL;
    END $$""",
    f"""CREATE TRIGGER {POSTGRES_COUNTED}_insert AFTER INSERT ON memories_memory
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {POSTGRES_COUNTED}_follow()""",
    f"""CREATE TRIGGER {POSTGRES_COUNTED}_update AFTER UPDATE ON memories_memory
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {POSTGRES_COUNTED}_follow()""",
    f"""CREATE TRIGGER {POSTGRES_COUNTED}_delete AFTER DELETE ON memories_memory
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {POSTGRES_COUNTED}_follow()""",
]
POSTGRES_BACKWARD = [
    f"DROP TRIGGER {POSTGRES_COUNTED}_delete ON memories_memory",
    f"DROP TRIGGER {POSTGRES_COUNTED}_update ON memories_memory",
    f"DROP TRIGGER {POSTGRES_COUNTED}_insert ON memories_memory",
    f"DROP FUNCTION {POSTGRES_COUNTED}_follow()",
    f"DROP TABLE {POSTGRES_COUNTED}",
]


def forward(apps, schema_editor):
    statements = {"sqlite": SQLITE_FORWARD, "postgresql": POSTGRES_FORWARD}
    for statement in statements.get(schema_editor.connection.vendor, []):
        schema_editor.execute(statement)


def backward(apps, schema_editor):
    statements = {"sqlite": SQLITE_BACKWARD, "postgresql": POSTGRES_BACKWARD}
    for statement in statements.get(schema_editor.connection.vendor, []):
        schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("memories", "0008_outbox_claims")]

    operations = [migrations.RunPython(forward, backward)]
