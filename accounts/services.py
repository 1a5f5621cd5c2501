"""Creating tenants and issuing, checking and revoking their API tokens."""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from accounts.models import ApiToken, Tenant

TOKEN_PREFIX = "ltm_"  # noqa: S105 - a marker, not a secret
# last_used_at is written at most this often per token, so a busy client does not
# turn every read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class IssuedToken:
    """A freshly issued token: the secret exists only in this object."""

    token: ApiToken
    secret: str


def token_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def tenant_create(*, slug: str, name: str = "") -> Tenant:
    """Create a tenant."""
    return Tenant.objects.create(slug=slug, name=name or slug)


@transaction.atomic
def tenant_set_active(*, tenant: Tenant, active: bool) -> Tenant:
    """Deactivate a tenant (its tokens stop working at once) or bring it back.

    Its data stays: forgetting a tenant's users is `forget_user`'s job.
    """
    tenant.is_active = active
    tenant.save(update_fields=["is_active"])
    return tenant


def token_issue(*, tenant: Tenant, name: str = "default") -> IssuedToken:
    """Issue a new token for a tenant; the secret is returned once, never stored."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        tenant=tenant,
        name=name,
        prefix=secret[: len(TOKEN_PREFIX) + 6],
        digest=token_digest(secret),
    )
    return IssuedToken(token=token, secret=secret)


def token_revoke(*, token: ApiToken) -> ApiToken:
    """Revoke a token; later requests with it are refused."""
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


def token_authenticate(*, secret: str) -> ApiToken | None:
    """The active token matching a secret, or None; records when it was last used."""
    token = (
        ApiToken.objects.select_related("tenant")
        .filter(digest=token_digest(secret))
        .first()
    )
    if token is None:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def usage_record(*, tenant: Tenant, calls: int, input_tokens: int, output_tokens: int):
    """Add language-model calls and tokens to a tenant's totals (race-free)."""
    from django.db.models import F

    from accounts.models import TenantUsage

    if not calls:
        return
    TenantUsage.objects.get_or_create(tenant=tenant)
    TenantUsage.objects.filter(tenant=tenant).update(
        llm_calls=F("llm_calls") + calls,
        input_tokens=F("input_tokens") + input_tokens,
        output_tokens=F("output_tokens") + output_tokens,
        updated_at=timezone.now(),
    )
