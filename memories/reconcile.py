"""Reconciliation: compare the vector index with the audit table, and repair it.

The audit table (`Memory` rows) is the source of truth. The index is listed once
through `store.scan`, a chunk at a time; each chunk's rows are looked up in one
query. Vectors with no active row where they sit are orphans; active rows with
no vector are missing; vectors whose metadata (or values) differ from what the
outbox would write have drifted. Repairs delete orphans directly (there may be
no row to hang an outbox entry on) and re-put missing and drifted vectors
through the outbox, so they are recorded and idempotent like any other write.
"""

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from accounts.models import Tenant
from memories.models import Memory, VectorOperation
from memories.outbox import vector_metadata as _vector_metadata
from memories.outbox import vector_operations_apply
from memories.vectorstores import Namespace, get_vector_store
from memories.vectorstores.base import StoredVector

logger = logging.getLogger(__name__)

# Listed vectors whose rows are looked up in one query.
LOOKUP_CHUNK = 1000
# The most vectors one put or delete carries (S3 Vectors accepts 500 a call).
WRITE_BATCH = 500
# Differences kept per tenant to show the operator; the rest are only counted.
EXAMPLES_PER_TENANT = 20
# Metadata that must agree with the row; other keys are the store's business
# (search helpers, extra keys a remote store adds).
COMPARED_METADATA = (
    "memory_id",
    "tenant_id",
    "user_id",
    "content_hash",
    "embedding_model",
    "text",
)
VECTOR_TOLERANCE = 1e-5

ORPHAN = "orphan"
MISSING = "missing"
DRIFT = "drift"

# Called with a stage ("vectors" listed, "rows" checked) and how many more were
# done, so that a command can show progress.
Progress = Callable[[str, int], None]


@dataclass(frozen=True)
class Difference:
    """One disagreement between the index and the audit table."""

    kind: str  # ORPHAN, MISSING or DRIFT
    namespace: Namespace
    key: str
    detail: str


@dataclass
class TenantReconciliation:
    """What was found (and repaired) in one tenant's part of the index."""

    tenant_id: int
    # None when the index holds vectors of a tenant the database does not know.
    slug: str | None
    vectors_listed: int = 0
    rows_checked: int = 0
    orphans: int = 0
    missing: int = 0
    drift: int = 0
    # Outbox entries not yet applied when the check ended: a difference they
    # cover is a write still on its way, not (yet) an inconsistency.
    outbox_pending: int = 0
    orphans_deleted: int = 0
    missing_restored: int = 0
    drift_rewritten: int = 0
    examples: list[Difference] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def differences(self) -> int:
        return self.orphans + self.missing + self.drift

    @property
    def repaired(self) -> int:
        return self.orphans_deleted + self.missing_restored + self.drift_rewritten

    @property
    def unrepaired(self) -> int:
        return self.differences - self.repaired

    def found(self, difference: Difference) -> None:
        if difference.kind == ORPHAN:
            self.orphans += 1
        elif difference.kind == MISSING:
            self.missing += 1
        else:
            self.drift += 1
        if len(self.examples) < EXAMPLES_PER_TENANT:
            self.examples.append(difference)

    def repaired_one(self, kind: str) -> None:
        if kind == ORPHAN:
            self.orphans_deleted += 1
        elif kind == MISSING:
            self.missing_restored += 1
        else:
            self.drift_rewritten += 1


@dataclass
class ReconcileReport:
    """The outcome of one reconciliation, per tenant."""

    fix: bool
    check_vectors: bool
    tenants: list[TenantReconciliation] = field(default_factory=list)

    def _total(self, name: str) -> int:
        return sum(getattr(tenant, name) for tenant in self.tenants)

    @property
    def vectors_listed(self) -> int:
        return self._total("vectors_listed")

    @property
    def rows_checked(self) -> int:
        return self._total("rows_checked")

    @property
    def differences(self) -> int:
        return self._total("differences")

    @property
    def repaired(self) -> int:
        return self._total("repaired")

    @property
    def unrepaired(self) -> int:
        return self._total("unrepaired")

    @property
    def outbox_pending(self) -> int:
        return self._total("outbox_pending")

    @property
    def is_clean(self) -> bool:
        return self.differences == 0


def vectors_reconcile(
    *,
    tenant: Tenant | None = None,
    fix: bool = False,
    check_vectors: bool = False,
    progress: Progress | None = None,
) -> ReconcileReport:
    """Compare the vector index with the audit table for one tenant or all, and
    with `fix` make the index match the table.

    Memory stays flat in the size of the index except for one set of the keys
    found in their right place (to tell which active rows have no vector).
    """
    reconciliation = _Reconciliation(
        fix=fix, check_vectors=check_vectors, progress=progress
    )
    return reconciliation.run(tenant)


def _canonical_uuid(key: str) -> uuid.UUID | None:
    """The memory key a vector key stands for; None if it is not one we write."""
    try:
        parsed = uuid.UUID(key)
    except ValueError:
        return None
    return parsed if str(parsed) == key else None


def _same_value(expected, stored) -> bool:
    """Equal, allowing the type changes a remote store makes (12 read as 12.0)."""
    if isinstance(expected, bool) or isinstance(stored, bool):
        return expected == stored
    if isinstance(expected, int | float):
        try:
            return float(stored) == float(expected)
        except (TypeError, ValueError):
            return False
    return str(stored) == str(expected)


def metadata_drift(expected: dict, stored: dict) -> list[str]:
    """The compared metadata keys where `stored` disagrees with `expected`."""
    return [
        key
        for key in COMPARED_METADATA
        if key in expected
        and (key not in stored or not _same_value(expected[key], stored[key]))
    ]


def _vector_differs(memory: Memory, vector: np.ndarray | None) -> bool:
    if vector is None:
        return True
    expected = np.frombuffer(bytes(memory.embedding), dtype="<f4")
    stored = np.asarray(vector, dtype=np.float32).reshape(-1)
    return stored.shape != expected.shape or not np.allclose(
        stored, expected, atol=VECTOR_TOLERANCE
    )


class _Reconciliation:
    """The state of one run: reports per tenant, the keys seen, repairs queued."""

    def __init__(
        self, *, fix: bool, check_vectors: bool, progress: Progress | None
    ) -> None:
        self.fix = fix
        self.check_vectors = check_vectors
        self.progress = progress or (lambda stage, done: None)
        self.store = get_vector_store()
        self.report = ReconcileReport(fix=fix, check_vectors=check_vectors)
        self.by_tenant: dict[int, TenantReconciliation] = {}
        # Per tenant, the keys (as integers: half the memory of strings) whose
        # vector sits in the namespace of its active row.
        self.placed: dict[int, set[int]] = {}
        # (memory id, tenant id, kind) to re-put through the outbox.
        self.rewrites: list[tuple[int, int, str]] = []

    def tenant_report(self, tenant_id: int, slug: str | None) -> TenantReconciliation:
        report = self.by_tenant.get(tenant_id)
        if report is None:
            report = TenantReconciliation(tenant_id=tenant_id, slug=slug)
            self.by_tenant[tenant_id] = report
        return report

    def run(self, tenant: Tenant | None) -> ReconcileReport:
        tenants = [tenant] if tenant else list(Tenant.objects.order_by("pk"))
        for each in tenants:
            self.tenant_report(each.pk, each.slug)
        # A row created after this moment may have its vector written after the
        # scan went past its place: it is not counted missing.
        started_at = timezone.now()
        chunk: list[StoredVector] = []
        for stored in self.store.scan(
            tenant_id=tenant.pk if tenant else None, with_vectors=self.check_vectors
        ):
            chunk.append(stored)
            if len(chunk) >= LOOKUP_CHUNK:
                self.check_listed(chunk)
                chunk = []
        self.check_listed(chunk)
        for each in tenants:
            self.find_missing(each, created_before=started_at)
        self.rewrite_queued()
        pending = dict(
            VectorOperation.objects.filter(
                applied_at__isnull=True, tenant__in=[each.pk for each in tenants]
            )
            .order_by()
            .values("tenant")
            .annotate(count=Count("pk"))
            .values_list("tenant", "count")
        )
        for tenant_id, count in pending.items():
            self.by_tenant[tenant_id].outbox_pending = count
        self.report.tenants = sorted(
            self.by_tenant.values(), key=lambda report: report.tenant_id
        )
        return self.report

    # -- the index side ---------------------------------------------------
    def check_listed(self, chunk: list[StoredVector]) -> None:
        """Sort listed vectors into placed, drifted and orphaned."""
        if not chunk:
            return
        keys = {stored.key: _canonical_uuid(stored.key) for stored in chunk}
        wanted = {key for key in keys.values() if key is not None}
        rows = Memory.objects.filter(vector_key__in=wanted)
        if not self.check_vectors:
            rows = rows.defer("embedding")
        memories = {memory.vector_key: memory for memory in rows}
        # Tenants in scope are known from the start; a full run may also list
        # vectors of a tenant created since, or of one long deleted (no slug).
        unknown = {stored.namespace.tenant_id for stored in chunk} - set(self.by_tenant)
        slugs = dict(
            Tenant.objects.filter(pk__in=unknown).values_list("pk", "slug")
            if unknown
            else []
        )
        orphans: dict[Namespace, list[str]] = {}
        for stored in chunk:
            namespace = stored.namespace
            report = self.tenant_report(
                namespace.tenant_id, slugs.get(namespace.tenant_id)
            )
            report.vectors_listed += 1
            parsed = keys[stored.key]
            memory = memories.get(parsed) if parsed is not None else None
            reason = self.orphan_reason(stored, parsed, memory)
            if reason:
                report.found(Difference(ORPHAN, namespace, stored.key, reason))
                orphans.setdefault(namespace, []).append(stored.key)
                continue
            self.placed.setdefault(namespace.tenant_id, set()).add(parsed.int)
            drift = self.drift_reason(stored, memory)
            if drift:
                report.found(Difference(DRIFT, namespace, stored.key, drift))
                self.queue_rewrite(memory.pk, memory.tenant_id, DRIFT)
        if self.fix:
            for namespace, orphan_keys in orphans.items():
                self.delete_orphans(namespace, orphan_keys)
        self.progress("vectors", len(chunk))

    @staticmethod
    def orphan_reason(
        stored: StoredVector, parsed: uuid.UUID | None, memory: Memory | None
    ) -> str:
        if parsed is None:
            return "the key is not a memory key"
        if memory is None:
            return "no memory has this key"
        if not memory.is_active:
            return f"memory {memory.pk} is {memory.status}"
        expected = Namespace(tenant_id=memory.tenant_id, user_id=memory.user_id)
        if stored.namespace != expected:
            return (
                f"memory {memory.pk} belongs to tenant {memory.tenant_id}, "
                f"user {memory.user_id!r}"
            )
        return ""

    def drift_reason(self, stored: StoredVector, memory: Memory) -> str:
        drifted = metadata_drift(_vector_metadata(memory), stored.metadata or {})
        if self.check_vectors and _vector_differs(memory, stored.vector):
            drifted.append("vector")
        return "differs: " + ", ".join(drifted) if drifted else ""

    def delete_orphans(self, namespace: Namespace, keys: list[str]) -> None:
        report = self.by_tenant[namespace.tenant_id]
        for start in range(0, len(keys), WRITE_BATCH):
            batch = keys[start : start + WRITE_BATCH]
            try:
                self.store.delete(namespace=namespace, keys=batch)
            except Exception as exc:
                # Keep going: the other namespaces can still be repaired, and the
                # report says what was left.
                logger.warning("Orphan vectors in %s not deleted: %s", namespace, exc)
                report.errors.append(
                    f"{len(batch)} orphan(s) of user {namespace.user_id!r} not "
                    f"deleted: {exc}"
                )
                continue
            logger.info("Deleted %d orphan vector(s) from %s", len(batch), namespace)
            for _ in batch:
                report.repaired_one(ORPHAN)

    # -- the table side ---------------------------------------------------
    def find_missing(self, tenant: Tenant, *, created_before) -> None:
        """Active rows of the tenant whose vector was not found in its place."""
        report = self.by_tenant[tenant.pk]
        placed = self.placed.pop(tenant.pk, set())
        active = Memory.objects.filter(
            tenant=tenant, status=Memory.Status.ACTIVE, created_at__lt=created_before
        ).order_by("pk")
        last_pk = 0
        # Pages by primary key rather than one open cursor, so the outbox writes
        # made between pages cannot disturb it.
        while page := list(
            active.filter(pk__gt=last_pk).values_list("pk", "user_id", "vector_key")[
                :LOOKUP_CHUNK
            ]
        ):
            last_pk = page[-1][0]
            for memory_id, user_id, key in page:
                report.rows_checked += 1
                if key.int in placed:
                    continue
                namespace = Namespace(tenant_id=tenant.pk, user_id=user_id)
                report.found(
                    Difference(MISSING, namespace, str(key), f"memory {memory_id}")
                )
                self.queue_rewrite(memory_id, tenant.pk, MISSING)
            self.progress("rows", len(page))

    # -- repairs through the outbox --------------------------------------
    def queue_rewrite(self, memory_id: int, tenant_id: int, kind: str) -> None:
        if not self.fix:
            return
        self.rewrites.append((memory_id, tenant_id, kind))
        if len(self.rewrites) >= WRITE_BATCH:
            self.rewrite_queued()

    def rewrite_queued(self) -> None:
        """Re-put the queued memories' vectors from their rows, via the outbox."""
        batch, self.rewrites = self.rewrites, []
        if not batch:
            return
        operation_ids = _outbox_entries_for(
            (memory_id, tenant_id) for memory_id, tenant_id, _ in batch
        )
        vector_operations_apply(operation_ids=operation_ids, limit=len(operation_ids))
        # Entries still pending failed: vector_operations_apply logged why and
        # kept them for the next run (or the tenant's next request).
        failed = dict(
            VectorOperation.objects.filter(
                pk__in=operation_ids, applied_at__isnull=True
            ).values_list("memory_id", "last_error")
        )
        not_rewritten: dict[int, int] = {}
        for memory_id, tenant_id, kind in batch:
            if memory_id in failed:
                not_rewritten[tenant_id] = not_rewritten.get(tenant_id, 0) + 1
            else:
                self.by_tenant[tenant_id].repaired_one(kind)
        error = next((error for error in failed.values() if error), "unknown error")
        for tenant_id, count in not_rewritten.items():
            self.by_tenant[tenant_id].errors.append(
                f"{count} vector(s) not rewritten: {error}"
            )


def _outbox_entries_for(memories: Iterable[tuple[int, int]]) -> list[int]:
    """Pending outbox entries covering these (memory id, tenant id) pairs: the
    ones already pending (a failed earlier write) plus a new one where none is."""
    tenant_of = dict(memories)
    with transaction.atomic():
        already = set(
            VectorOperation.objects.filter(
                memory_id__in=tenant_of, applied_at__isnull=True
            ).values_list("memory_id", flat=True)
        )
        VectorOperation.objects.bulk_create(
            [
                VectorOperation(memory_id=memory_id, tenant_id=tenant_id)
                for memory_id, tenant_id in tenant_of.items()
                if memory_id not in already
            ]
        )
        return list(
            VectorOperation.objects.filter(
                memory_id__in=tenant_of, applied_at__isnull=True
            ).values_list("pk", flat=True)
        )
