from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from accounts.models import ApiToken, Tenant
from accounts.scoping import TenantScopedAdminMixin
from accounts.services import token_revoke
from memories.selectors import (
    end_users_list,
    tenant_memory_counts,
    tenant_message_count,
)

# End users listed per page of a tenant's end-users page.
END_USERS_PER_PAGE = 100


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
class TenantAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    tenant_field = ""
    # Operators assign tenant-scoped support staff here.
    filter_horizontal = ["support_staff"]
    list_display = ["slug", "name", "is_active", "created_at", "tokens_spent"]
    list_filter = ["is_active"]
    list_select_related = ["usage"]
    search_fields = ["slug", "name"]
    readonly_fields = [
        "created_at",
        "memory_counts",
        "message_count",
        "end_users_link",
        "llm_calls",
        "input_tokens",
        "output_tokens",
        "tokens_spent",
    ]
    inlines = [ApiTokenInline]

    def _usage(self, tenant):
        return getattr(tenant, "usage", None)

    @admin.display(description="memories")
    def memory_counts(self, tenant) -> str:
        counts = tenant_memory_counts(tenant=tenant)
        return ", ".join(f"{count} {status}" for status, count in counts.items())

    @admin.display(description="messages")
    def message_count(self, tenant) -> int:
        return tenant_message_count(tenant=tenant)

    @admin.display(description="end users")
    def end_users_link(self, tenant):
        url = reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_end_users",
            args=[tenant.pk],
        )
        return format_html('<a href="{}">End users and their memory counts</a>', url)

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

    # -- the end users of a tenant ------------------------------------------
    def get_urls(self):
        return [
            path(
                "<path:object_id>/end-users/",
                self.admin_site.admin_view(self.end_users_view),
                name=f"{self.opts.app_label}_{self.opts.model_name}_end_users",
            ),
            *super().get_urls(),
        ]

    def end_users_view(self, request, object_id):
        """A tenant's end users with their memory counts, a page at a time."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        tenant = self.get_object(request, unquote(object_id))
        if tenant is None:
            raise Http404(f"No tenant with id {object_id!r}.")
        search = request.GET.get("q", "").strip()
        paginator = Paginator(
            end_users_list(tenant=tenant, search=search), END_USERS_PER_PAGE
        )
        page = paginator.get_page(request.GET.get("page"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"End users of {tenant}",
            "tenant": tenant,
            "search": search,
            "page": page,
            "page_range": paginator.get_elided_page_range(page.number),
            "memories_url": reverse("admin:memories_memory_changelist"),
        }
        return TemplateResponse(
            request, "admin/accounts/tenant/end_users.html", context
        )


@admin.register(ApiToken)
class ApiTokenAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
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

    # Changing a token is revoking it; support staff only view tokens.
    @admin.action(description="Revoke the selected tokens", permissions=["change"])
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
