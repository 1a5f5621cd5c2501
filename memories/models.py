"""The memory domain: messages, memories (the audit mirror of each vector), their
history, and the outbox of vector-store operations."""

import uuid

from django.db import models
from django.utils import timezone

from accounts.models import Tenant


class TenantScopedQuerySet(models.QuerySet):
    def for_tenant(self, tenant: Tenant):
        return self.filter(tenant=tenant)

    def for_user(self, tenant: Tenant, user_id: str):
        return self.filter(tenant=tenant, user_id=user_id)


class MemoryQuerySet(TenantScopedQuerySet):
    def with_vector_keys(self, keys):
        """These vector keys' rows, found through the keys' unique index.

        Compared in the same WHERE as the tenant and user, the keys leave the
        planner free to walk all of the user's rows instead, which SQLite does
        for a hundred keys (150 ms at 100,000 memories).
        """
        keyed = Memory.objects.filter(vector_key__in=keys).order_by().values("pk")
        return self.filter(pk__in=keyed)


class Message(models.Model):
    """A message an end user sent, kept as the provenance of the memories from it."""

    class Kind(models.TextChoices):
        MESSAGE = "message"
        FORGET = "forget"

    class MemoryUpdate(models.TextChoices):
        """Whether what the message says is in the user's memories yet."""

        DONE = "done"
        # LTM_MEMORY_MODE=async: answered, its memories waiting for a worker.
        PENDING = "pending"
        # A worker has claimed it, until `memory_claimed_until`.
        WORKING = "working"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    user_id = models.CharField(max_length=255)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.MESSAGE)
    memory_update = models.CharField(
        max_length=16, choices=MemoryUpdate.choices, default=MemoryUpdate.DONE
    )
    memory_claimed_until = models.DateTimeField(null=True, blank=True)
    role = models.CharField(max_length=32, default="user")
    # Who said it, when a conversation between named people is imported.
    speaker = models.CharField(max_length=100, blank=True)
    # The client's own id for the message; imports are idempotent on it.
    client_message_id = models.CharField(max_length=255, blank=True)
    # Blank once redacted: a forget request's text, or a message a forgotten memory
    # came from, is not kept.
    text = models.TextField(blank=True)
    redacted_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = TenantScopedQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "user_id", "sent_at"]),
            # A user's messages still to remember, in order (async memory).
            models.Index(
                fields=["tenant", "user_id", "id"],
                condition=~models.Q(memory_update="done"),
                name="message_memory_not_done",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "user_id", "client_message_id"],
                condition=~models.Q(client_message_id=""),
                name="unique_client_message_id_per_user",
            )
        ]
        ordering = ["sent_at", "id"]

    def __str__(self) -> str:
        return f"message {self.pk} of {self.user_id}"


class Memory(models.Model):
    """One memory, a fact or an episode: the source of truth for the vector stored
    under its key."""

    class Kind(models.TextChoices):
        # A statement extracted from a message, by the rules or a model.
        FACT = "fact"
        # What was said, as it was said: a message, or one passage of a long one.
        EPISODE = "episode"

    class Status(models.TextChoices):
        ACTIVE = "active"
        # Kept, with its text, but never recalled or searched and without a
        # vector: support staff hid it, and may restore it.
        HIDDEN = "hidden"
        DELETED = "deleted"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    user_id = models.CharField(max_length=255)
    vector_key = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.FACT)
    # The role of the message it came from: "user", "assistant" or "other".
    role = models.CharField(max_length=32, blank=True)
    # An episode's place among its message's passages (0 for the first).
    passage = models.PositiveIntegerField(default=0)
    text = models.TextField(blank=True)
    content_hash = models.CharField(max_length=64, blank=True)
    speaker = models.CharField(max_length=100, blank=True)
    # The speaker and text as keyword search reads them (memories.search.document).
    search_body = models.TextField(blank=True)
    # Words of the neighbouring messages, searched by keyword (never returned):
    # an answer like "Woodworking classes" is found through the question before it.
    context_text = models.TextField(blank=True)
    # Facts of one kind the user has only one of (where they live, their job):
    # a new fact with the same slot replaces the old one.
    slot = models.CharField(max_length=64, blank=True)
    embedding_model = models.CharField(max_length=200)
    embedding_dimension = models.PositiveIntegerField()
    # float32 little-endian; kept so the vector index can be rebuilt without
    # re-embedding.
    embedding = models.BinaryField(editable=False)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.ACTIVE
    )
    source_message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Every message that stated the fact (the first, and any that repeated it).
    sources = models.ManyToManyField(
        Message, through="MemorySource", related_name="memories"
    )
    # When the fact happened: a time the message named, else when it was said.
    happened_at = models.DateTimeField(null=True, blank=True)
    # "day", "week", "month" or "year" when the message named a time; blank when
    # happened_at is only the time the fact was said.
    time_granularity = models.CharField(max_length=8, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.CharField(max_length=200, blank=True)

    objects = MemoryQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "user_id", "status"]),
            models.Index(fields=["tenant", "user_id", "happened_at"]),
            models.Index(fields=["tenant", "user_id", "content_hash"]),
        ]
        constraints = [
            # One active copy of a fact (or of an episode's words) per user: the
            # same statement sent several times at once is stored once.
            models.UniqueConstraint(
                fields=["tenant", "user_id", "kind", "content_hash"],
                condition=models.Q(status="active") & ~models.Q(content_hash=""),
                name="one_active_copy_per_user",
            )
        ]
        verbose_name_plural = "memories"
        ordering = ["-created_at", "-id"]
        permissions = [("moderate_memory", "Can hide, restore, edit and delete")]

    def __str__(self) -> str:
        return f"memory {self.pk} of {self.user_id}"

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


class MemorySource(models.Model):
    """A message a memory came from: its provenance."""

    memory = models.ForeignKey(Memory, on_delete=models.CASCADE)
    message = models.ForeignKey(Message, on_delete=models.CASCADE)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["memory", "message"], name="unique_memory_source"
            )
        ]

    def __str__(self) -> str:
        return f"memory {self.memory_id} from message {self.message_id}"


class MemoryEvent(models.Model):
    """An append-only record of one change to a memory."""

    class Action(models.TextChoices):
        ADD = "add"
        UPDATE = "update"
        DELETE = "delete"
        HIDE = "hide"
        RESTORE = "restore"

    memory = models.ForeignKey(Memory, on_delete=models.CASCADE, related_name="events")
    action = models.CharField(max_length=16, choices=Action.choices)
    # Texts are blanked when the memory is forgotten; the event stays as a tombstone.
    old_text = models.TextField(blank=True)
    new_text = models.TextField(blank=True)
    actor = models.CharField(max_length=200)
    reason = models.CharField(max_length=500, blank=True)
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # For an update: when the old text stopped being true (the time of the
    # message that superseded it).
    valid_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.action} of memory {self.memory_id}"


class VectorOperation(models.Model):
    """Outbox entry: make the vector index match one memory row.

    Written in the same transaction as the row and applied after commit; an entry
    left pending (the store failed, the process died) is applied again later.
    """

    memory = models.ForeignKey(Memory, on_delete=models.CASCADE, related_name="+")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    applied_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    # Not tried again before this, after a failure.
    retry_after = models.DateTimeField(null=True, blank=True)
    # The process applying it: it alone marks it, and nobody else writes the
    # memory's vector until the claim is marked or expires.
    claim_token = models.UUIDField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["applied_at", "tenant"])]

    def __str__(self) -> str:
        return f"sync memory {self.memory_id}"


class ErasureJob(models.Model):
    """An erasure of an end user run as a task (DELETE /api/v1/users/{userId}
    with `Prefer: respond-async`), and how far it has come."""

    class State(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    user_id = models.CharField(max_length=255)
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    memories_total = models.PositiveIntegerField(default=0)
    memories_done = models.PositiveIntegerField(default=0)
    # What the synchronous answer would have said (UserErasureSerializer).
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = TenantScopedQuerySet.as_manager()

    def __str__(self) -> str:
        return f"erasure {self.pk} of {self.user_id}: {self.state}"


class ExportJob(models.Model):
    """An export of an end user's data run as a task (GET
    /api/v1/users/{userId}/export with `Prefer: respond-async`): its progress,
    and the file, kept in parts until it expires or the user's data changes
    by a forget or an erasure (a copy of forgotten words must not outlive them)."""

    class State(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        # The file is gone: past its time, deleted by the client, or discarded
        # because the user's data was forgotten or erased after it was asked for.
        EXPIRED = "expired"
        DISCARDED = "discarded"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    user_id = models.CharField(max_length=255)
    export_format = models.CharField(max_length=8, default="json")
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    records_total = models.PositiveIntegerField(default=0)
    records_done = models.PositiveIntegerField(default=0)
    size_bytes = models.PositiveBigIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    objects = TenantScopedQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "user_id", "state"]),
            models.Index(fields=["state", "expires_at"]),
        ]

    def __str__(self) -> str:
        return f"export {self.pk} of {self.user_id}: {self.state}"


class ExportPart(models.Model):
    """A piece of an export's file, in order; a file is its parts joined."""

    job = models.ForeignKey(ExportJob, on_delete=models.CASCADE, related_name="parts")
    number = models.PositiveIntegerField()
    text = models.TextField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "number"], name="export_part_once")
        ]

    def __str__(self) -> str:
        return f"part {self.number} of export {self.job_id}"
