from django.core.management.base import BaseCommand

from accounts.models import Tenant
from accounts.services import tenant_create, token_issue


class Command(BaseCommand):
    help = (
        "Create the 'demo' tenant with a token on first run and print the token "
        "once; later runs say how to get another."
    )

    def add_arguments(self, parser):
        parser.add_argument("--slug", default="demo")

    def handle(self, *args, slug, **options):
        if Tenant.objects.filter(slug=slug).exists():
            self.stdout.write(
                f"Tenant {slug!r} exists. Its token was printed when it was created; "
                f"for a new one run: python manage.py issue_token {slug}"
            )
            return
        tenant = tenant_create(slug=slug, name="Demo tenant")
        issued = token_issue(tenant=tenant, name="demo")
        self.stdout.write(self.style.SUCCESS(f"Created tenant {slug!r}."))
        self.stdout.write("API token (shown once, store it now):\n" + issued.secret)
