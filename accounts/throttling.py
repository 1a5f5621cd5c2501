"""Per-tenant request rate limit."""

from rest_framework.throttling import SimpleRateThrottle

from accounts.models import Tenant


class TenantRateThrottle(SimpleRateThrottle):
    """Limit each tenant to LTM_RATE_LIMIT requests (shared by all its tokens)."""

    scope = "tenant"

    def get_cache_key(self, request, view):
        if not isinstance(request.user, Tenant):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}
