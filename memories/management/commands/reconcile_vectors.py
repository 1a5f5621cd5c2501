import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from accounts.models import Tenant
from memories.reconcile import ReconcileReport, TenantReconciliation, vectors_reconcile

# Per stage of the check: the bar's label and the unit it counts.
STAGES = {
    "vectors": ("listing vectors", " vectors"),
    "rows": ("checking rows", " rows"),
}


class _ProgressBars:
    """One tqdm bar per stage of the check, opened when the stage starts."""

    def __init__(self) -> None:
        self.bars: dict[str, tqdm] = {}

    def __call__(self, stage: str, done: int) -> None:
        bar = self.bars.get(stage)
        if bar is None:
            # On stderr, so the report on stdout stays clean to read or parse.
            label, unit = STAGES.get(stage, (stage, "it"))
            bar = tqdm(desc=label, unit=unit, file=sys.stderr, disable=None)
            self.bars[stage] = bar
        bar.update(done)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()


class Command(BaseCommand):
    help = (
        "Compare the vector index with the audit table: orphan vectors, missing "
        "vectors, drifted metadata. Exits 1 when they differ; --fix repairs."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", help="Only this tenant (slug)")
        parser.add_argument(
            "--fix",
            action="store_true",
            help="Delete orphans and re-put missing and drifted vectors, then "
            "check again",
        )
        parser.add_argument(
            "--check-vectors",
            action="store_true",
            help="Also compare the stored vectors with the rows' embeddings",
        )
        parser.add_argument(
            "--no-progress", action="store_true", help="Show no progress bars"
        )

    def handle(self, *args, tenant, fix, check_vectors, no_progress, **options):
        owner = None
        if tenant:
            owner = Tenant.objects.filter(slug=tenant).first()
            if owner is None:
                raise CommandError(f"No tenant with slug {tenant!r}.")
        show_progress = not no_progress and self.stdout.isatty()

        report = self._reconcile(owner, fix, check_vectors, show_progress)
        self._write_report(report)
        if report.is_clean:
            self.stdout.write(self.style.SUCCESS("The vector index matches."))
            return
        if not fix:
            # A non-zero exit status lets a scheduled check raise an alert.
            raise CommandError(
                f"{report.differences} difference(s) between the vector index "
                "and the audit table."
            )

        recheck = self._reconcile(owner, False, check_vectors, show_progress)
        self.stdout.write(
            f"Re-check: {recheck.vectors_listed} vector(s), "
            f"{recheck.differences} difference(s)."
        )
        if report.unrepaired or recheck.differences:
            raise CommandError(
                f"{report.unrepaired} difference(s) not repaired, "
                f"{recheck.differences} found on re-check; run it again."
            )
        self.stdout.write(
            self.style.SUCCESS(f"Repaired {report.repaired}; the vector index matches.")
        )

    def _reconcile(
        self, owner, fix: bool, check_vectors: bool, show_progress: bool
    ) -> ReconcileReport:
        progress = _ProgressBars() if show_progress else None
        try:
            return vectors_reconcile(
                tenant=owner, fix=fix, check_vectors=check_vectors, progress=progress
            )
        finally:
            if progress is not None:
                progress.close()

    def _write_report(self, report: ReconcileReport) -> None:
        for tenant in report.tenants:
            self._write_tenant(tenant, fix=report.fix)
        self.stdout.write(
            f"Total: {report.vectors_listed} vector(s) listed, "
            f"{report.rows_checked} row(s) checked, "
            f"{report.differences} difference(s), "
            f"{report.outbox_pending} outbox operation(s) pending."
        )

    def _write_tenant(self, tenant: TenantReconciliation, *, fix: bool) -> None:
        name = tenant.slug or "(no such tenant)"
        self.stdout.write(
            f"{name} (id {tenant.tenant_id}): "
            f"{tenant.vectors_listed} vector(s) listed, "
            f"{tenant.rows_checked} row(s) checked; "
            f"orphans {tenant.orphans}, missing {tenant.missing}, "
            f"drift {tenant.drift}; outbox pending {tenant.outbox_pending}"
        )
        for difference in tenant.examples:
            self.stdout.write(
                f"  {difference.kind:<7} user {difference.namespace.user_id!r} "
                f"key {difference.key}: {difference.detail}"
            )
        if tenant.differences > len(tenant.examples):
            self.stdout.write(
                f"  ... and {tenant.differences - len(tenant.examples)} more"
            )
        if fix and tenant.differences:
            self.stdout.write(
                f"  repaired: {tenant.orphans_deleted} orphan(s) deleted, "
                f"{tenant.missing_restored} missing restored, "
                f"{tenant.drift_rewritten} drifted rewritten; "
                f"{tenant.unrepaired} not repaired"
            )
        for error in tenant.errors:
            self.stdout.write(self.style.ERROR(f"  {error}"))
