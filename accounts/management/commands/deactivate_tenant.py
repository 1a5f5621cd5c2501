from django.core.management.base import BaseCommand, CommandError

from accounts.models import Tenant
from accounts.services import tenant_set_active


class Command(BaseCommand):
    help = (
        "Deactivate a tenant: its API tokens are refused at once (tenant_inactive); "
        "its data stays. --reactivate undoes it."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--reactivate", action="store_true")

    def handle(self, *args, slug, reactivate, **options):
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"No tenant {slug!r}.")
        tenant_set_active(tenant=tenant, active=reactivate)
        state = "reactivated" if reactivate else "deactivated"
        self.stdout.write(self.style.SUCCESS(f"Tenant {slug} {state}."))
