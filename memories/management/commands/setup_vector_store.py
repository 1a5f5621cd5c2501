from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from accounts.models import Tenant
from memories.vectorstores import VectorStoreError, get_vector_store


class Command(BaseCommand):
    help = (
        "Check the configured vector store against the embedder and, for S3 "
        "Vectors, create each tenant's index (or only check with --check)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", help="Only this tenant (slug)")
        parser.add_argument(
            "--check",
            action="store_true",
            help="Create nothing; exit with status 1 if an index is missing or wrong",
        )

    def handle(self, *args, tenant, check, **options):
        tenants = Tenant.objects.order_by("pk")
        if tenant:
            tenants = tenants.filter(slug=tenant)
            if not tenants.exists():
                raise CommandError(f"No tenant {tenant!r}.")
        try:
            store = get_vector_store()
            store.verify()
        except VectorStoreError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"Vector store: {settings.LTM_VECTOR_STORE}; embedder "
            f"{store.model_name}, dimension {store.dimension}."
        )
        ensure_index = getattr(store, "ensure_index", None)
        if ensure_index is None:
            self.stdout.write("Nothing to create: the local store keeps one file.")
            return
        problems = 0
        for owner in tenants.iterator():
            name = store.index_name(owner.pk)
            try:
                mode = ensure_index(owner.pk, create=not check)
            except VectorStoreError as exc:
                problems += 1
                self.stderr.write(f"{owner.slug}: {name}: {exc}")
                continue
            note = (
                ""
                if mode == "ENHANCED"
                else " (no full-text search: recall uses vectors alone)"
            )
            self.stdout.write(f"{owner.slug}: {name} ready, {mode} mode{note}.")
        if problems:
            raise CommandError(f"{problems} index(es) missing or unusable.")
