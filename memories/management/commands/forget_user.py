import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from accounts.models import Tenant
from memories.user_data import (
    DEFAULT_BATCH_SIZE,
    storage_compact,
    user_data_counts,
    user_data_forget,
    user_data_forget_count,
    user_data_remaining,
)


def read_user_ids(path: str) -> list[str]:
    """One user id a line; blank lines are skipped, other spaces are kept (an id
    may hold them)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"Cannot read {path}: {exc}") from exc
    return [line for line in text.splitlines() if line.strip()]


class Command(BaseCommand):
    help = (
        "Erase everything stored about end users of a tenant: memories' text, "
        "history text, messages' text and vectors. Tombstones without content "
        "stay. Batched and resumable: run it again to finish an interrupted run. "
        "Ends with a verification of what remains (must be 0); exits 1 if any."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="The tenant (slug)")
        parser.add_argument("user_ids", nargs="*", metavar="USER_ID")
        parser.add_argument(
            "--file", help="A file of user ids, one a line (instead of USER_IDs)"
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count what is stored about each user; change nothing",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=DEFAULT_BATCH_SIZE,
            help="Memories per transaction and per vector delete (default "
            f"{DEFAULT_BATCH_SIZE}; on S3 Vectors a multiple of 500 makes the "
            "fewest calls)",
        )
        parser.add_argument(
            "--no-progress", action="store_true", help="Show no progress bar"
        )

    def handle(self, *args, tenant, user_ids, file, dry_run, batch_size, **options):
        if bool(user_ids) == bool(file):
            raise CommandError("Give user ids or --file, not both nor neither.")
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        owner = Tenant.objects.filter(slug=tenant).first()
        if owner is None:
            raise CommandError(f"No tenant with slug {tenant!r}.")
        # Each user once, in the order given.
        users = list(dict.fromkeys(read_user_ids(file) if file else user_ids))
        if not users:
            raise CommandError(f"{file} holds no user ids.")

        if dry_run:
            for user_id in users:
                self._write_counts(owner, user_id)
            self.stdout.write(f"Dry run: nothing changed for {len(users)} user(s).")
            return

        show_progress = not options["no_progress"] and self.stdout.isatty()
        incomplete = []
        for user_id in users:
            vectors_listed = self._forget(owner, user_id, batch_size, show_progress)
            remaining = user_data_remaining(
                tenant=owner, user_id=user_id, vectors=vectors_listed
            )
            self.stdout.write(
                f"  remaining: {remaining.vectors} vector(s), "
                f"{remaining.memories_with_content} memory row(s) with content, "
                f"{remaining.events_with_text} history event(s) with text, "
                f"{remaining.messages_with_text} message(s) with text, "
                f"{remaining.export_files} export file(s)"
            )
            if remaining.total:
                incomplete.append(user_id)
        # Once for all the users: it rewrites the whole index.
        storage_compact()
        if incomplete:
            # A non-zero exit status: the operator (or a script) must not take
            # the erasure as done.
            raise CommandError(
                f"Data remains for {len(incomplete)} user(s): "
                f"{', '.join(map(repr, incomplete))}; run it again."
            )
        self.stdout.write(
            self.style.SUCCESS(f"Forgot {len(users)} user(s); nothing remains.")
        )

    def _write_counts(self, owner: Tenant, user_id: str) -> None:
        counts = user_data_counts(tenant=owner, user_id=user_id)
        self.stdout.write(
            f"{user_id!r}: {counts.memories} memory row(s) "
            f"({counts.memories_to_forget} to forget), "
            f"{counts.messages} message(s) ({counts.messages_with_text} with text), "
            f"{counts.events_with_text} history event(s) with text, "
            f"{counts.vectors} vector(s) in the store"
        )

    def _forget(
        self, owner: Tenant, user_id: str, batch_size: int, show_progress: bool
    ) -> int | None:
        """Forget one user; returns the vectors listed in their namespace after."""
        bar = None
        if show_progress:
            # On stderr, so the report on stdout stays clean to read or parse.
            bar = tqdm(
                total=user_data_forget_count(tenant=owner, user_id=user_id),
                desc=f"forgetting {user_id}",
                unit=" memories",
                file=sys.stderr,
            )
        try:
            report = user_data_forget(
                tenant=owner,
                user_id=user_id,
                batch_size=batch_size,
                progress=bar.update if bar is not None else None,
            )
        except Exception as exc:
            raise CommandError(
                f"Forgetting {user_id!r} stopped: {exc}. What was erased stays "
                "erased and vector deletes not made wait in the outbox; run the "
                "command again to finish."
            ) from exc
        finally:
            if bar is not None:
                bar.close()
        self.stdout.write(
            f"{user_id!r}: {report.memories_forgotten} memory row(s) erased "
            f"({report.memories_deleted} newly deleted), "
            f"{report.events_blanked} history event(s) blanked, "
            f"{report.messages_purged} message(s) purged, "
            f"{report.vector_deletes} vector key(s) deleted in batches, "
            f"{report.leftover_vectors_deleted} leftover vector(s) deleted"
        )
        return report.vectors_listed_after
