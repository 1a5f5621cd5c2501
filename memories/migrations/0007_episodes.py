"""Episodes beside facts, and one active copy of each per user.

Content hashes now cover the kind, role and speaker as well as the words, so
the same words said by two people are two memories. Copies that were stored
twice by concurrent requests before the constraint existed are merged into the
oldest: its provenance gains theirs, and they become tombstones whose vectors
the outbox deletes.
"""

from django.db import migrations, models
from django.db.models import Count, Min, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from memories.text import digest, keyword_text

SQLITE_PARTITION = "'p' || {row}.tenant_id || 'u' || lower(hex({row}.user_id))"
# The keyword index reads the two stored parts of the keyword document, which
# Python computes once (memories.search.document), instead of its own copy of
# the rule.
SQLITE_FORWARD = [
    # Adding columns rebuilds the table on SQLite, which drops its triggers.
    "DROP TRIGGER IF EXISTS memories_memory_fts_update",
    "DROP TRIGGER IF EXISTS memories_memory_fts_insert",
    "DROP TRIGGER IF EXISTS memories_memory_fts_delete",
    """CREATE TRIGGER memories_memory_fts_delete AFTER DELETE ON memories_memory
    BEGIN
        DELETE FROM memories_memory_fts WHERE rowid = old.id;
    END""",
    f"""CREATE TRIGGER memories_memory_fts_insert AFTER INSERT ON memories_memory
    WHEN new.status = 'active' BEGIN
        INSERT INTO memories_memory_fts (rowid, partition, body, context)
        VALUES (new.id, {SQLITE_PARTITION.format(row="new")},
                new.search_body, new.context_text);
    END""",
    f"""CREATE TRIGGER memories_memory_fts_update AFTER UPDATE ON memories_memory
    BEGIN
        DELETE FROM memories_memory_fts WHERE rowid = old.id;
        INSERT INTO memories_memory_fts (rowid, partition, body, context)
        SELECT new.id, {SQLITE_PARTITION.format(row="new")},
               new.search_body, new.context_text
        WHERE new.status = 'active';
    END""",
    "DELETE FROM memories_memory_fts",
    f"""INSERT INTO memories_memory_fts (rowid, partition, body, context)
    SELECT m.id, {SQLITE_PARTITION.format(row="m")}, m.search_body, m.context_text
    FROM memories_memory m WHERE m.status = 'active'""",
]
POSTGRES_FORWARD = [
    "DROP INDEX memories_memory_search_vector",
    "ALTER TABLE memories_memory DROP COLUMN search_vector",
    """ALTER TABLE memories_memory ADD COLUMN search_vector tsvector
    GENERATED ALWAYS AS (
        setweight(to_tsvector('english'::regconfig, coalesce(search_body, '')), 'A')
        || setweight(to_tsvector('english'::regconfig, coalesce(context_text, '')), 'B')
    ) STORED""",
    "CREATE INDEX memories_memory_search_vector ON memories_memory "
    "USING gin (search_vector) WHERE status = 'active'",
]


def reindex(apps, schema_editor):
    statements = {"sqlite": SQLITE_FORWARD, "postgresql": POSTGRES_FORWARD}.get(
        schema_editor.connection.vendor, []
    )
    for statement in statements:
        schema_editor.execute(statement)


def rehash_and_merge(apps, schema_editor):
    Memory = apps.get_model("memories", "Memory")
    Message = apps.get_model("memories", "Message")
    MemorySource = apps.get_model("memories", "MemorySource")
    MemoryEvent = apps.get_model("memories", "MemoryEvent")
    VectorOperation = apps.get_model("memories", "VectorOperation")
    Memory.objects.filter(role="").update(
        role=Coalesce(
            Subquery(
                Message.objects.filter(pk=OuterRef("source_message_id")).values(
                    "role"
                )[:1]
            ),
            Value(""),
        )
    )
    for memory in Memory.objects.exclude(text="").iterator(chunk_size=1000):
        memory.content_hash = digest("fact", memory.role, memory.speaker, memory.text)
        memory.search_body = keyword_text(
            " ".join(part for part in (memory.speaker, memory.text) if part)
        )
        memory.save(update_fields=["content_hash", "search_body"])
    groups = (
        Memory.objects.filter(status="active")
        .exclude(content_hash="")
        .values("tenant_id", "user_id", "kind", "content_hash")
        .annotate(copies=Count("pk"), keep=Min("pk"))
        .filter(copies__gt=1)
    )
    now = timezone.now()
    for group in groups:
        copies = Memory.objects.filter(
            tenant_id=group["tenant_id"],
            user_id=group["user_id"],
            kind=group["kind"],
            content_hash=group["content_hash"],
            status="active",
        ).exclude(pk=group["keep"])
        for copy in copies:
            for source in MemorySource.objects.filter(memory=copy):
                MemorySource.objects.get_or_create(
                    memory_id=group["keep"], message_id=source.message_id
                )
            MemoryEvent.objects.filter(memory=copy).update(old_text="", new_text="")
            MemoryEvent.objects.create(
                memory=copy,
                action="delete",
                actor="migration",
                reason=f"a copy of memory {group['keep']}",
                created_at=now,
            )
            copy.text = copy.content_hash = copy.context_text = ""
            copy.slot = copy.speaker = copy.search_body = ""
            copy.embedding = b""
            copy.status = "deleted"
            copy.updated_at = now
            copy.updated_by = "migration"
            copy.save()
            VectorOperation.objects.create(memory=copy, tenant_id=copy.tenant_id)


class Migration(migrations.Migration):
    dependencies = [("memories", "0006_support_group")]

    operations = [
        migrations.AddField(
            model_name="memory",
            name="kind",
            field=models.CharField(
                choices=[("fact", "Fact"), ("episode", "Episode")],
                default="fact",
                max_length=8,
            ),
        ),
        migrations.AddField(
            model_name="memory",
            name="role",
            field=models.CharField(blank=True, max_length=32),
        ),
        migrations.AddField(
            model_name="memory",
            name="passage",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="memory",
            name="search_body",
            field=models.TextField(blank=True),
        ),
        migrations.RunPython(rehash_and_merge, migrations.RunPython.noop),
        migrations.RunPython(reindex, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="memory",
            constraint=models.UniqueConstraint(
                condition=models.Q(("status", "active"))
                & ~models.Q(("content_hash", "")),
                fields=("tenant", "user_id", "kind", "content_hash"),
                name="one_active_copy_per_user",
            ),
        ),
    ]
