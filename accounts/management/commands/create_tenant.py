from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError

from accounts.services import tenant_create, token_issue


class Command(BaseCommand):
    help = "Create a tenant and, unless --no-token, issue its first API token."

    def add_arguments(self, parser):
        parser.add_argument("slug", help="Short unique name, e.g. acme")
        parser.add_argument("--name", default="", help="Display name")
        parser.add_argument(
            "--no-token", action="store_true", help="Do not issue a token now"
        )

    def handle(self, *args, slug, name, no_token, **options):
        try:
            tenant = tenant_create(slug=slug, name=name)
        except IntegrityError as exc:
            raise CommandError(f"Tenant {slug!r} already exists.") from exc
        self.stdout.write(self.style.SUCCESS(f"Created tenant {tenant.slug}."))
        if not no_token:
            issued = token_issue(tenant=tenant)
            self.stdout.write("API token (shown once, store it now):\n" + issued.secret)
