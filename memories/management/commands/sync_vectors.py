from django.core.management.base import BaseCommand, CommandError

from accounts.models import Tenant
from memories.models import VectorOperation
from memories.outbox import vector_operations_apply


class Command(BaseCommand):
    help = "Apply vector-store operations left pending by a failure (the outbox)."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", help="Only this tenant (slug)")
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args, tenant, batch_size, **options):
        owner = None
        if tenant:
            owner = Tenant.objects.filter(slug=tenant).first()
            if owner is None:
                raise CommandError(f"No tenant {tenant!r}.")
        applied = 0
        while True:
            done = vector_operations_apply(tenant=owner, limit=batch_size)
            applied += done
            if done == 0:
                break
        pending = VectorOperation.objects.filter(applied_at__isnull=True)
        if owner is not None:
            pending = pending.filter(tenant=owner)
        remaining = pending.count()
        self.stdout.write(f"Applied {applied} operation(s); {remaining} still pending.")
        if remaining:
            raise CommandError(f"{remaining} operation(s) could not be applied.")
