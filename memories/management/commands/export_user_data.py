import os
import sys
import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from accounts.models import Tenant
from memories.user_data import (
    EXPORT_FORMAT,
    EXPORT_FORMATS,
    EXPORT_VERSION,
    user_data_export,
    user_data_export_count,
)


class Command(BaseCommand):
    help = (
        "Export everything stored about an end user of a tenant (right of access "
        "and portability), streamed as it is read. "
        f'Format "{EXPORT_FORMAT}" version {EXPORT_VERSION}: with --format json one '
        'object {"format", "version", "tenant", "userId", "exportedAt", '
        '"memories": [...], "messages": [...]}; with --format jsonl a header '
        'line ({"type": "header", ...}), one line per record ({"type": "memory"} '
        'or {"type": "message"}) and a last line {"type": "end"} with the counts. '
        "A memory has its status, text, times, provenance (source message ids and "
        "client message ids) and full history; a message its kind, role, speaker, "
        "text, times and client id. Forgotten memories and redacted messages are "
        "exported as the tombstones they are (blank text, status deleted or "
        "redactedAt set). See README.md, 'Exporting an end user's data'."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="The tenant (slug)")
        parser.add_argument("user_id", metavar="USER_ID")
        parser.add_argument(
            "--format",
            choices=EXPORT_FORMATS,
            default="json",
            help="One JSON object (the default), or JSON Lines: a record a line",
        )
        parser.add_argument(
            "--output",
            default="-",
            help="A file to write (made readable by its owner only, and only "
            "once complete) or - for stdout (the default)",
        )
        parser.add_argument(
            "--no-progress", action="store_true", help="Show no progress bar"
        )

    def handle(self, *args, tenant, user_id, output, no_progress, **options):
        export_format = options["format"]
        owner = Tenant.objects.filter(slug=tenant).first()
        if owner is None:
            raise CommandError(f"No tenant with slug {tenant!r}.")
        to_stdout = output == "-"
        # On stderr; not when the export itself is being printed on the terminal.
        show_progress = (
            not no_progress
            and self.stderr.isatty()
            and not (to_stdout and self.stdout.isatty())
        )
        bar = None
        if show_progress:
            bar = tqdm(
                total=user_data_export_count(tenant=owner, user_id=user_id),
                desc=f"exporting {user_id}",
                unit=" records",
                file=sys.stderr,
            )
        try:
            if to_stdout:
                counts = user_data_export(
                    tenant=owner,
                    user_id=user_id,
                    write=lambda text: self.stdout.write(text, ending=""),
                    export_format=export_format,
                    progress=bar.update if bar is not None else None,
                )
            else:
                counts = self._export_to_file(
                    Path(output), owner, user_id, export_format, bar
                )
        finally:
            if bar is not None:
                bar.close()
        if not to_stdout:
            self.stdout.write(
                f"Wrote {counts.memories} memories and {counts.messages} messages "
                f"of {user_id!r} to {output}."
            )

    def _export_to_file(self, path: Path, owner, user_id, export_format, bar):
        # Written beside the target and renamed when complete, so a file at
        # that path is never a partial export; mkstemp makes it owner-only.
        directory = path.resolve().parent
        if not directory.is_dir():
            raise CommandError(f"No directory {directory} to write {path.name} in.")
        descriptor, partial = tempfile.mkstemp(
            dir=directory, prefix=f".{path.name}.", suffix=".partial"
        )
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                counts = user_data_export(
                    tenant=owner,
                    user_id=user_id,
                    write=file.write,
                    export_format=export_format,
                    progress=bar.update if bar is not None else None,
                )
            os.replace(partial, path)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
        return counts
