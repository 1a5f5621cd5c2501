"""API permissions."""

from rest_framework.permissions import BasePermission

from accounts.models import Tenant


class IsTenant(BasePermission):
    """Allow requests authenticated with a tenant's API token."""

    def has_permission(self, request, view) -> bool:
        return isinstance(request.user, Tenant)
