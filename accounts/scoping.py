"""Which tenants a member of staff may see in the admin."""

from django.db.models import QuerySet

from accounts.models import Tenant


def sees_every_tenant(user) -> bool:
    return user.is_superuser or user.has_perm("accounts.support_all_tenants")


def tenants_visible_to(user) -> QuerySet[Tenant]:
    if sees_every_tenant(user):
        return Tenant.objects.all()
    return Tenant.objects.filter(support_staff=user)


def scoped_to_tenants(queryset: QuerySet, user, *, tenant_field: str) -> QuerySet:
    """Only the rows of the tenants the user may see (`tenant_field` names the
    row's tenant; "" when the rows are tenants)."""
    if sees_every_tenant(user):
        return queryset
    lookup = f"{tenant_field}__support_staff" if tenant_field else "support_staff"
    return queryset.filter(**{lookup: user})


class TenantScopedAdminMixin:
    """An admin page that shows staff only the tenants they may see: its rows,
    its tenant filter's choices, and every object reached by its URLs."""

    tenant_field = "tenant"

    def get_queryset(self, request):
        return scoped_to_tenants(
            super().get_queryset(request), request.user, tenant_field=self.tenant_field
        )

    def get_list_filter(self, request):
        from django.contrib.admin import RelatedOnlyFieldListFilter

        return [
            (name, RelatedOnlyFieldListFilter) if name == self.tenant_field else name
            for name in super().get_list_filter(request)
        ]
