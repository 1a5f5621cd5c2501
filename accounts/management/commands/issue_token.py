from django.core.management.base import BaseCommand, CommandError

from accounts.models import Tenant
from accounts.services import token_issue


class Command(BaseCommand):
    help = "Issue a new API token for a tenant; the secret is printed once."

    def add_arguments(self, parser):
        parser.add_argument("tenant", help="Tenant slug")
        parser.add_argument("--name", default="default", help="Label for the token")

    def handle(self, *args, tenant, name, **options):
        try:
            owner = Tenant.objects.get(slug=tenant)
        except Tenant.DoesNotExist as exc:
            raise CommandError(f"No tenant {tenant!r}.") from exc
        issued = token_issue(tenant=owner, name=name)
        self.stdout.write(
            self.style.SUCCESS(f"Issued token {issued.token.prefix}… for {owner.slug}.")
        )
        self.stdout.write("API token (shown once, store it now):\n" + issued.secret)
