from django.contrib import admin
from django.template.defaultfilters import truncatechars

from memories.models import Memory, MemoryEvent, Message, VectorOperation


class ReadOnlyAdminMixin:
    """Support staff look here; changes go through services (moderation comes later)."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class MemoryEventInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = MemoryEvent
    extra = 0
    fields = [
        "created_at",
        "action",
        "old_text",
        "new_text",
        "actor",
        "reason",
        "message",
    ]
    readonly_fields = fields


@admin.register(Memory)
class MemoryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "excerpt",
        "user_id",
        "tenant",
        "status",
        "happened_at",
        "created_at",
    ]
    list_filter = ["tenant", "status", "created_at"]
    list_select_related = ["tenant"]
    search_fields = ["text", "user_id", "tenant__slug", "=vector_key"]
    date_hierarchy = "created_at"
    fields = [
        "tenant",
        "user_id",
        "text",
        "status",
        "slot",
        "happened_at",
        "time_granularity",
        "source_message",
        "source_text",
        "vector_key",
        "content_hash",
        "embedding_model",
        "embedding_dimension",
        "created_at",
        "updated_at",
        "updated_by",
    ]
    readonly_fields = fields
    inlines = [MemoryEventInline]

    @admin.display(description="text")
    def excerpt(self, memory: Memory) -> str:
        return truncatechars(memory.text, 80) or "(deleted)"

    @admin.display(description="source message text")
    def source_text(self, memory: Memory) -> str:
        if memory.source_message is None:
            return ""
        return memory.source_message.text or "(redacted)"


@admin.register(Message)
class MessageAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "user_id", "tenant", "kind", "excerpt", "sent_at"]
    list_filter = ["tenant", "kind", "sent_at"]
    list_select_related = ["tenant"]
    search_fields = ["text", "user_id", "tenant__slug"]
    readonly_fields = [
        "tenant",
        "user_id",
        "kind",
        "role",
        "text",
        "redacted_at",
        "sent_at",
        "created_at",
    ]

    @admin.display(description="text")
    def excerpt(self, message: Message) -> str:
        return truncatechars(message.text, 80) or "(redacted)"


@admin.register(VectorOperation)
class VectorOperationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "memory", "tenant", "created_at", "applied_at", "attempts"]
    list_filter = ["tenant", ("applied_at", admin.EmptyFieldListFilter)]
    list_select_related = ["tenant", "memory"]
    readonly_fields = [
        "memory",
        "tenant",
        "created_at",
        "applied_at",
        "attempts",
        "last_error",
    ]
