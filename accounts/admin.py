from django.contrib import admin, messages
from django.utils import timezone

from accounts.models import ApiToken, Tenant
from accounts.services import token_revoke


class ApiTokenInline(admin.TabularInline):
    model = ApiToken
    extra = 0
    can_delete = False
    fields = ["name", "prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        # Tokens are issued by `manage.py issue_token`, which shows the secret once.
        return False


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "is_active", "created_at", "tokens_spent"]
    list_filter = ["is_active"]
    list_select_related = ["usage"]
    search_fields = ["slug", "name"]
    readonly_fields = [
        "created_at",
        "llm_calls",
        "input_tokens",
        "output_tokens",
        "tokens_spent",
    ]
    inlines = [ApiTokenInline]

    def _usage(self, tenant):
        return getattr(tenant, "usage", None)

    @admin.display(description="language-model calls")
    def llm_calls(self, tenant) -> int:
        usage = self._usage(tenant)
        return usage.llm_calls if usage else 0

    @admin.display(description="input tokens")
    def input_tokens(self, tenant) -> int:
        usage = self._usage(tenant)
        return usage.input_tokens if usage else 0

    @admin.display(description="output tokens")
    def output_tokens(self, tenant) -> int:
        usage = self._usage(tenant)
        return usage.output_tokens if usage else 0

    @admin.display(description="tokens spent")
    def tokens_spent(self, tenant) -> int:
        usage = self._usage(tenant)
        return usage.total_tokens if usage else 0


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = [
        "prefix",
        "name",
        "tenant",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = ["tenant", ("revoked_at", admin.EmptyFieldListFilter)]
    list_select_related = ["tenant"]
    search_fields = ["prefix", "name", "tenant__slug"]
    # The digest is never shown; the secret itself is never stored.
    fields = ["tenant", "name", "prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = fields
    actions = ["revoke_tokens"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Revoke the selected tokens")
    def revoke_tokens(self, request, queryset):
        count = 0
        for token in queryset.filter(revoked_at__isnull=True):
            token_revoke(token=token)
            count += 1
        self.message_user(
            request,
            f"Revoked {count} token(s) at {timezone.now():%Y-%m-%d %H:%M} UTC.",
            messages.SUCCESS,
        )
