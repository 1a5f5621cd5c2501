from django.core.management.base import BaseCommand

from accounts.models import ApiToken


class Command(BaseCommand):
    help = "List API tokens (prefixes only; secrets are never stored)."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", help="Only this tenant's tokens")

    def handle(self, *args, tenant, **options):
        tokens = ApiToken.objects.select_related("tenant").order_by(
            "tenant__slug", "created_at"
        )
        if tenant:
            tokens = tokens.filter(tenant__slug=tenant)
        for token in tokens:
            state = "revoked" if token.is_revoked else "active"
            last_used = (
                f"{token.last_used_at:%Y-%m-%d %H:%M}"
                if token.last_used_at
                else "never"
            )
            self.stdout.write(
                f"{token.tenant.slug}\t{token.prefix}\t{token.name}\t{state}\t"
                f"created {token.created_at:%Y-%m-%d %H:%M}\tlast used {last_used}"
            )
