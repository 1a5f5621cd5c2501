from django.core.management.base import BaseCommand, CommandError

from accounts.models import ApiToken
from accounts.services import token_revoke


class Command(BaseCommand):
    help = "Revoke an API token, given its prefix (as listed by list_tokens)."

    def add_arguments(self, parser):
        parser.add_argument("prefix", help="The token's prefix, e.g. ltm_AbC123")
        parser.add_argument("--tenant", help="Tenant slug, if prefixes collide")

    def handle(self, *args, prefix, tenant, **options):
        tokens = ApiToken.objects.filter(prefix=prefix)
        if tenant:
            tokens = tokens.filter(tenant__slug=tenant)
        matches = list(tokens.select_related("tenant")[:2])
        if not matches:
            raise CommandError(f"No token with prefix {prefix!r}.")
        if len(matches) > 1:
            raise CommandError("Several tokens share this prefix: add --tenant.")
        token = token_revoke(token=matches[0])
        self.stdout.write(
            self.style.SUCCESS(
                f"Revoked token {token.prefix}… of {token.tenant.slug} "
                f"at {token.revoked_at:%Y-%m-%d %H:%M:%S} UTC."
            )
        )
