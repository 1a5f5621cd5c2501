"""The admin of the memory domain: read-only pages for support staff, and the
moderation of memories (hide, restore, edit text, delete) through the services
the API uses, so the audit table and the vector store never disagree."""

from collections.abc import Callable
from dataclasses import dataclass

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import display_for_value, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef
from django.http import Http404, HttpResponseRedirect
from django.template.defaultfilters import truncatechars
from django.template.response import TemplateResponse
from django.urls import path, reverse

from accounts.scoping import TenantScopedAdminMixin
from memories import moderation as services
from memories.models import Memory, MemoryEvent, MemorySource, Message, VectorOperation
from memories.providers.embeddings import EmbeddingError
from memories.writes import Actor

# Memories listed by name on a bulk confirmation page; the rest are counted.
CONFIRMATION_LISTED = 100
# Refusals spelled out after a bulk action; the rest are counted.
REFUSALS_SHOWN = 5


class ReadOnlyAdminMixin:
    """Nothing is added, changed or deleted through Django's own forms: every
    change to a memory goes through the services (see the moderation below)."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class MemoryEventInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = MemoryEvent
    extra = 0
    verbose_name_plural = "history"
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

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("message")


class MemorySourceInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = MemorySource
    extra = 0
    verbose_name = "source message"
    verbose_name_plural = "provenance: the messages that stated it"
    fields = ["message", "sent_at", "client_message_id", "speaker", "message_text"]
    readonly_fields = fields

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("message")
            .order_by("message__sent_at", "message_id")
        )

    @admin.display(description="sent at")
    def sent_at(self, source: MemorySource) -> str:
        # Formatted as the admin formats a date field (a callable's value is not).
        return display_for_value(source.message.sent_at, self.get_empty_value_display())

    @admin.display(description="client message id")
    def client_message_id(self, source: MemorySource) -> str:
        return source.message.client_message_id

    @admin.display(description="speaker")
    def speaker(self, source: MemorySource) -> str:
        return source.message.speaker

    @admin.display(description="text")
    def message_text(self, source: MemorySource) -> str:
        return source.message.text or "(redacted)"


class SourceListFilter(admin.SimpleListFilter):
    """How a memory came in: told through /message, imported, or without a
    source message. Read from the actor of its first history event."""

    title = "source"
    parameter_name = "source"

    def lookups(self, request, model_admin):
        return [
            ("message", "told in a message"),
            ("import", "imported"),
            ("none", "no source message"),
        ]

    def queryset(self, request, queryset):
        added_by = MemoryEvent.objects.filter(
            memory=OuterRef("pk"), action=MemoryEvent.Action.ADD
        )
        if self.value() == "message":
            # "api", or "api:<model>" when a language model planned it.
            return queryset.filter(Exists(added_by.filter(actor__startswith=Actor.API)))
        if self.value() == "import":
            return queryset.filter(Exists(added_by.filter(actor=Actor.IMPORT)))
        if self.value() == "none":
            return queryset.filter(source_message__isnull=True)
        return queryset


class ReasonForm(forms.Form):
    reason = forms.CharField(
        max_length=services.REASON_MAX_CHARS,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="Kept in the memory's history with your user name.",
    )


class EditTextForm(ReasonForm):
    text = forms.CharField(
        max_length=settings.LTM_MAX_MESSAGE_CHARS,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        help_text="Re-embedded and written to the vector store; the old text stays "
        "in the history.",
    )

    field_order = ["text", "reason"]


@dataclass(frozen=True)
class Moderation:
    """One moderation action as the admin offers it."""

    name: str
    label: str
    done: str  # past tense, for the report
    effect: str  # shown on the confirmation page
    service: Callable[..., Memory]
    applies_to: frozenset[str]  # the statuses the service accepts


MODERATIONS = {
    moderation.name: moderation
    for moderation in [
        Moderation(
            name="hide",
            label="Hide",
            done="Hid",
            effect="A hidden memory keeps its text and history but is never "
            "recalled or found by search; its vector is deleted. It can be "
            "restored.",
            service=services.memory_hide,
            applies_to=services.HIDE_APPLIES_TO,
        ),
        Moderation(
            name="restore",
            label="Restore",
            done="Restored",
            effect="A restored memory is recalled and searched again; its vector "
            "is written back.",
            service=services.memory_restore,
            applies_to=services.RESTORE_APPLIES_TO,
        ),
        Moderation(
            name="delete",
            label="Delete",
            done="Deleted",
            effect="The vector, the text, the history's text and the text of the "
            "messages it came from are erased; a tombstone without content "
            "stays. This cannot be undone.",
            service=services.memory_delete_by_staff,
            applies_to=services.DELETE_APPLIES_TO,
        ),
    ]
}


@admin.register(Memory)
class MemoryAdmin(TenantScopedAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "excerpt",
        "kind",
        "role",
        "user_id",
        "tenant",
        "happened_at",
        "stored_at",
        "status",
    ]
    list_filter = [
        "tenant",
        "kind",
        "role",
        "status",
        "happened_at",
        "created_at",
        SourceListFilter,
    ]
    list_select_related = ["tenant"]
    search_fields = ["text", "user_id", "tenant__slug", "=vector_key"]
    date_hierarchy = "created_at"
    fields = [
        "tenant",
        "user_id",
        "text",
        "status",
        "speaker",
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
    inlines = [MemorySourceInline, MemoryEventInline]
    actions = ["hide_memories", "restore_memories", "delete_memories"]
    change_form_template = "admin/memories/memory/change_form.html"

    @admin.display(description="text")
    def excerpt(self, memory: Memory) -> str:
        return truncatechars(memory.text, 80) or "(deleted)"

    @admin.display(description="stored at", ordering="created_at")
    def stored_at(self, memory: Memory):
        return memory.created_at

    @admin.display(description="source message text")
    def source_text(self, memory: Memory) -> str:
        if memory.source_message is None:
            return ""
        return memory.source_message.text or "(redacted)"

    # -- moderation: who --------------------------------------------------
    def has_moderate_permission(self, request) -> bool:
        return request.user.has_perm(
            f"{self.opts.app_label}.moderate_{self.opts.model_name}"
        )

    def _actor(self, request) -> str:
        return services.staff_actor(request.user.get_username())

    # -- moderation: one memory, from its page ----------------------------
    def _url_name(self, view: str) -> str:
        return f"{self.opts.app_label}_{self.opts.model_name}_{view}"

    def get_urls(self):
        moderate = self.admin_site.admin_view(self.moderate_view)
        edit = self.admin_site.admin_view(self.edit_text_view)
        return [
            path(
                "<path:object_id>/moderate/edit/",
                edit,
                name=self._url_name("edit_text"),
            ),
            path(
                "<path:object_id>/moderate/<slug:name>/",
                moderate,
                name=self._url_name("moderate"),
            ),
            *super().get_urls(),
        ]

    def render_change_form(self, request, context, *args, obj=None, **kwargs):
        if obj is not None and self.has_moderate_permission(request):
            context["moderation_links"] = self._moderation_links(obj)
        return super().render_change_form(request, context, *args, obj=obj, **kwargs)

    def _moderation_links(self, memory: Memory) -> list[tuple[str, str]]:
        links = []
        if memory.status in services.EDIT_APPLIES_TO:
            links.append(
                (
                    "Edit text",
                    reverse("admin:" + self._url_name("edit_text"), args=[memory.pk]),
                )
            )
        for moderation in MODERATIONS.values():
            if memory.status in moderation.applies_to:
                url = reverse(
                    "admin:" + self._url_name("moderate"),
                    args=[memory.pk, moderation.name],
                )
                links.append((moderation.label, url))
        return links

    def _moderated_memory(self, request, object_id) -> Memory:
        if not self.has_moderate_permission(request):
            raise PermissionDenied
        memory = self.get_object(request, unquote(object_id))
        if memory is None:
            raise Http404(f"No memory with id {object_id!r}.")
        return memory

    def _back_to(self, memory: Memory) -> HttpResponseRedirect:
        return HttpResponseRedirect(
            reverse("admin:" + self._url_name("change"), args=[memory.pk])
        )

    def moderate_view(self, request, object_id, name):
        memory = self._moderated_memory(request, object_id)
        moderation = MODERATIONS.get(name)
        if moderation is None:
            raise Http404(f"No moderation action {name!r}.")
        form = ReasonForm(request.POST if request.method == "POST" else None)
        if request.method == "POST":
            if form.is_valid():
                return self._moderate_one(request, memory, moderation, form)
            self._refuse_without_reason(request)
        return self._confirmation(
            request,
            title=f"{moderation.label} this memory?",
            effect=moderation.effect,
            submit=f"Yes, {moderation.label.lower()}",
            form=form,
            memories=[memory],
            memory=memory,
        )

    def _moderate_one(self, request, memory, moderation, form):
        try:
            moderation.service(
                memory=memory,
                actor=self._actor(request),
                reason=form.cleaned_data["reason"],
            )
        except services.ModerationError as refusal:
            self.message_user(request, str(refusal), messages.ERROR)
        else:
            self.message_user(
                request, f"{moderation.done} memory {memory.pk}.", messages.SUCCESS
            )
        return self._back_to(memory)

    def edit_text_view(self, request, object_id):
        memory = self._moderated_memory(request, object_id)
        if request.method == "POST":
            form = EditTextForm(request.POST)
            if form.is_valid():
                try:
                    services.memory_edit(
                        memory=memory,
                        text=form.cleaned_data["text"],
                        actor=self._actor(request),
                        reason=form.cleaned_data["reason"],
                    )
                except services.ModerationError as refusal:
                    self.message_user(request, str(refusal), messages.ERROR)
                except EmbeddingError as failure:
                    self.message_user(
                        request,
                        f"The embedding provider failed: nothing was changed "
                        f"({failure}).",
                        messages.ERROR,
                    )
                else:
                    self.message_user(
                        request, f"Edited memory {memory.pk}.", messages.SUCCESS
                    )
                    return self._back_to(memory)
            elif "reason" in form.errors:
                self._refuse_without_reason(request)
        else:
            form = EditTextForm(initial={"text": memory.text})
        return self._confirmation(
            request,
            title="Edit this memory's text",
            effect=EditTextForm.base_fields["text"].help_text,
            submit="Save the new text",
            form=form,
            memories=[memory],
            memory=memory,
        )

    # -- moderation: several memories, from the list ----------------------
    @admin.action(description="Hide the selected memories", permissions=["moderate"])
    def hide_memories(self, request, queryset):
        return self._moderate_many(request, queryset, MODERATIONS["hide"])

    @admin.action(
        description="Restore the selected hidden memories", permissions=["moderate"]
    )
    def restore_memories(self, request, queryset):
        return self._moderate_many(request, queryset, MODERATIONS["restore"])

    @admin.action(
        description="Delete the selected memories (vector and content)",
        permissions=["moderate"],
    )
    def delete_memories(self, request, queryset):
        return self._moderate_many(request, queryset, MODERATIONS["delete"])

    def _moderate_many(self, request, queryset, moderation: Moderation):
        """Ask for a reason on a confirmation page (as Django's own bulk delete
        asks for confirmation), then apply the action in one transaction."""
        confirmed = request.POST.get("post") == "yes"
        form = ReasonForm(request.POST if confirmed else None)
        if confirmed:
            if form.is_valid():
                outcome = services.memories_moderate(
                    memories=queryset.order_by("pk"),
                    action=moderation.service,
                    actor=self._actor(request),
                    reason=form.cleaned_data["reason"],
                )
                self._report(request, moderation, outcome)
                return None  # back to the list
            self._refuse_without_reason(request)
        memories = list(queryset.order_by("pk"))
        return self._confirmation(
            request,
            title=f"{moderation.label} {len(memories)} memories?",
            effect=moderation.effect,
            submit=f"Yes, {moderation.label.lower()} them",
            form=form,
            memories=memories,
            action=request.POST.get("action"),
        )

    def _report(self, request, moderation, outcome) -> None:
        self.message_user(
            request,
            f"{moderation.done} {len(outcome.changed)} memories.",
            messages.SUCCESS if outcome.changed else messages.WARNING,
        )
        if outcome.refused:
            reasons = "; ".join(why for _, why in outcome.refused[:REFUSALS_SHOWN])
            more = len(outcome.refused) - REFUSALS_SHOWN
            tail = f" (and {more} more)" if more > 0 else ""
            self.message_user(
                request,
                f"{len(outcome.refused)} left as they were: {reasons}{tail}.",
                messages.WARNING,
            )

    # -- moderation: shared -----------------------------------------------
    def _refuse_without_reason(self, request) -> None:
        self.message_user(
            request,
            "A reason is required: nothing was changed.",
            messages.ERROR,
        )

    def _confirmation(
        self,
        request,
        *,
        title: str,
        effect: str,
        submit: str,
        form: forms.Form,
        memories: list[Memory],
        memory: Memory | None = None,
        action: str | None = None,
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "effect": effect,
            "submit": submit,
            "form": form,
            "memory": memory,
            "memories": memories[:CONFIRMATION_LISTED],
            "unlisted": max(len(memories) - CONFIRMATION_LISTED, 0),
            # For a bulk action: posted back to the list with the selection.
            "action": action,
            "selected": [each.pk for each in memories] if action else [],
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(
            request, "admin/memories/memory/moderation_confirmation.html", context
        )


@admin.register(Message)
class MessageAdmin(TenantScopedAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "user_id", "tenant", "kind", "excerpt", "sent_at"]
    list_filter = ["tenant", "kind", "sent_at"]
    list_select_related = ["tenant"]
    search_fields = ["text", "user_id", "tenant__slug", "=client_message_id"]
    readonly_fields = [
        "tenant",
        "user_id",
        "kind",
        "role",
        "speaker",
        "client_message_id",
        "text",
        "redacted_at",
        "sent_at",
        "created_at",
    ]

    @admin.display(description="text")
    def excerpt(self, message: Message) -> str:
        return truncatechars(message.text, 80) or "(redacted)"


@admin.register(VectorOperation)
class VectorOperationAdmin(
    TenantScopedAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin
):
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
