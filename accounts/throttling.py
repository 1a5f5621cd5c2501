"""Rate limits: requests per tenant, and failed authentications per client
address.

Each limit is a counter per fixed window in the cache, added and incremented
in one step (Redis INCR, or the local cache's lock), so workers sharing a
Redis cache never let a burst through between a read and a write.
"""

import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

from accounts.models import Tenant


def parse_rate(rate: str | None) -> tuple[int, int] | None:
    """ "600/min" as (600, 60); None for no limit."""
    if not rate:
        return None
    return SimpleRateThrottle.parse_rate(None, rate)


def _window(scope: str, ident: str, duration: int) -> tuple[str, float]:
    """The current window's counter key, and the seconds until it ends."""
    now = time.time()
    window = int(now // duration)
    return f"ltm:rate:{scope}:{ident}:{window}", (window + 1) * duration - now


def window_add(scope: str, ident: str, duration: int) -> tuple[int, float]:
    """Counts one in the current window: the new count, and the seconds left."""
    key, remaining = _window(scope, ident, duration)
    # The counter outlives its window a little, so it cannot vanish between
    # the add and the increment.
    if cache.add(key, 1, timeout=duration + 5):
        return 1, remaining
    return cache.incr(key), remaining


def window_read(scope: str, ident: str, duration: int) -> tuple[int, float]:
    key, remaining = _window(scope, ident, duration)
    return cache.get(key, 0), remaining


class TenantRateThrottle(BaseThrottle):
    """Limit each tenant to LTM_RATE_LIMIT requests (shared by all its tokens)."""

    def allow_request(self, request, view) -> bool:
        # Read when the request is made, so the setting can change at run time.
        rate = parse_rate(settings.LTM_RATE_LIMIT)
        self._wait = None
        if rate is None or not isinstance(request.user, Tenant):
            return True
        limit, duration = rate
        count, remaining = window_add("tenant", str(request.user.pk), duration)
        if count > limit:
            self._wait = remaining
            return False
        return True

    def wait(self) -> float | None:
        return self._wait


def client_address(request) -> str:
    # Behind a proxy this is the proxy's address unless the proxy sets
    # REMOTE_ADDR (gunicorn's --forwarded-allow-ips does for trusted proxies).
    return request.META.get("REMOTE_ADDR") or "unknown"


def failed_authentications_wait(request) -> float | None:
    """Seconds a client address must wait, when its failed authentications are
    over LTM_AUTH_FAILURE_LIMIT in the current window."""
    rate = parse_rate(settings.LTM_AUTH_FAILURE_LIMIT)
    if rate is None:
        return None
    limit, duration = rate
    count, remaining = window_read("auth-failures", client_address(request), duration)
    return remaining if count >= limit else None


def failed_authentication_count(request) -> None:
    rate = parse_rate(settings.LTM_AUTH_FAILURE_LIMIT)
    if rate is not None:
        window_add("auth-failures", client_address(request), rate[1])
