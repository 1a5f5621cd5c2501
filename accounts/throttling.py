"""Per-tenant request rate limit."""

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

from accounts.models import Tenant


class TenantRateThrottle(SimpleRateThrottle):
    """Limit each tenant to LTM_RATE_LIMIT requests (shared by all its tokens)."""

    scope = "tenant"

    def get_rate(self) -> str | None:
        # Read when the request is made, so the setting can change at run time.
        return settings.LTM_RATE_LIMIT or None

    def get_cache_key(self, request, view):
        if not isinstance(request.user, Tenant):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}
