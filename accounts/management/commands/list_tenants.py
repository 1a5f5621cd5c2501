from django.core.management.base import BaseCommand
from django.db.models import Count, Q

from accounts.models import Tenant


class Command(BaseCommand):
    help = "List tenants with their state, live tokens and language-model tokens spent."

    def add_arguments(self, parser):
        parser.add_argument(
            "--inactive", action="store_true", help="Only deactivated tenants"
        )

    def handle(self, *args, inactive, **options):
        tenants = (
            Tenant.objects.order_by("slug")
            .select_related("usage")
            .annotate(
                live_tokens=Count("tokens", filter=Q(tokens__revoked_at__isnull=True))
            )
        )
        if inactive:
            tenants = tenants.filter(is_active=False)
        self.stdout.write(
            f"{'slug':<24}{'state':<10}{'tokens':>7}{'LLM tokens':>12}  created"
        )
        for tenant in tenants:
            usage = getattr(tenant, "usage", None)
            spent = usage.total_tokens if usage else 0
            state = "active" if tenant.is_active else "inactive"
            self.stdout.write(
                f"{tenant.slug:<24}{state:<10}{tenant.live_tokens:>7}{spent:>12}  "
                f"{tenant.created_at:%Y-%m-%d}"
            )
