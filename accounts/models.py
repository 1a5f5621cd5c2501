"""Tenants (the applications that use LTM) and their API tokens."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class Tenant(models.Model):
    """An application that stores its users' memories in LTM."""

    slug = models.SlugField(max_length=63, unique=True)
    name = models.CharField(max_length=200)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # Staff who see and moderate this tenant only (the "tenant support" group);
    # staff with support_all_tenants (the "support" group) see every tenant.
    support_staff = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="supported_tenants"
    )

    class Meta:
        ordering = ["slug"]
        permissions = [("support_all_tenants", "Can see and moderate every tenant")]

    def __str__(self) -> str:
        return self.slug

    # An authenticated API request carries its tenant as `request.user`.
    is_authenticated = True


class ApiTokenQuerySet(models.QuerySet):
    def active(self) -> "ApiTokenQuerySet":
        return self.filter(revoked_at__isnull=True, tenant__is_active=True)


class ApiToken(models.Model):
    """A bearer token of a tenant; only its SHA-256 digest is stored."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="tokens")
    name = models.CharField(max_length=100, default="default")
    # The first characters of the secret, shown so people can tell tokens apart.
    prefix = models.CharField(max_length=16, db_index=True)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.tenant.slug}/{self.name} ({self.prefix}…)"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class TenantUsage(models.Model):
    """Language-model calls and tokens a tenant has spent, in total."""

    tenant = models.OneToOneField(
        Tenant, on_delete=models.CASCADE, related_name="usage", primary_key=True
    )
    llm_calls = models.PositiveBigIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "usage"
        verbose_name_plural = "usage"

    def __str__(self) -> str:
        return f"usage of {self.tenant_id}"

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens
