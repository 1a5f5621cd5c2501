"""forget_user and export_user_data on one end user with many memories.

    python bench/user_data.py [--memories 100000] [--s3] [--keep-db-url]

Generates, in this process, two tenants each with one user of N memories (and N
source messages, an add event per memory and an update event with an old text on
one in ten, so that the export has history and provenance): rows are
bulk-created with random unit vectors as embeddings, and the vectors are put into
the store in batches. The local store by default; with --s3, the test suite's
stand-in for S3 Vectors (moto, extended), which this process serves over HTTP on
127.0.0.1 so that the measured processes are clients only, as with AWS.

Then each phase runs in a fresh subprocess, so that ru_maxrss is the phase's own:
export_user_data (to a temporary file) and forget_user, each once plainly on the
first tenant (wall time, ru_maxrss) and once under tracemalloc on the second
(peak of Python allocations; tracemalloc slows the run, so its time is not the
one reported). For each it prints the vector-store calls made: counted by a
wrapper around the local store, or by the stand-in (HTTP requests by operation).
ru_maxrss is also read just before the phase starts (after Django, the database
connection and, for forget, the vector store and the embedding model it is
sized by), so that the growth the phase itself causes shows. On PostgreSQL
(--keep-db-url) the tables are analyzed after generating, as autovacuum would
soon do; the temporary data directory is removed at the end.
"""

import argparse
import functools
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "ltm-bench"
USER_ID = "bench-user"
TENANTS = ("bench-plain", "bench-traced")
# Rows per bulk insert, and vectors per put while generating.
GENERATE_BATCH = 5000


def configure(data_dir: str, *, keep_db_url: bool, s3: bool) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ltm_project.settings")
    os.environ["LTM_SECRET_KEY"] = "bench-only-secret"  # noqa: S105
    os.environ["LTM_DATA_DIR"] = data_dir
    Path(data_dir, "static").mkdir(exist_ok=True)
    if not keep_db_url:
        os.environ.pop("DATABASE_URL", None)
    if s3:
        os.environ["LTM_VECTOR_STORE"] = "s3vectors"
        os.environ["LTM_S3VECTORS_BUCKET"] = BUCKET
        os.environ["LTM_S3VECTORS_REGION"] = "us-east-1"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def max_rss_mib() -> float:
    # Linux reports kibibytes.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- generation (in the parent process) -------------------------------------------
# Realistic text: words of English drawn by frequency rank (Zipf-like).
VOCABULARY_SIZE = 20_000


@functools.cache
def vocabulary() -> tuple[list[str], object]:
    """English's most frequent words (wordfreq) and probabilities ∝ 1/rank."""
    import numpy as np
    from wordfreq import top_n_list

    words = [word for word in top_n_list("en", VOCABULARY_SIZE) if word.isalpha()]
    weights = 1.0 / np.arange(1, len(words) + 1)
    return words, weights / weights.sum()


def sentences(rng, count: int, low: int, high: int) -> list[str]:
    """`count` sentences of `low` to `high` words drawn by frequency, from `rng`."""
    words, probabilities = vocabulary()
    lengths = rng.integers(low, high + 1, size=count)
    drawn = rng.choice(len(words), size=int(lengths.sum()), p=probabilities)
    found, position = [], 0
    for length in lengths:
        chosen = [words[index] for index in drawn[position : position + length]]
        position += length
        found.append(" ".join(chosen).capitalize() + ".")
    return found


def generate(
    tenant_slug: str,
    count: int,
    seed: int,
    *,
    text: str = "template",
    user_id: str = USER_ID,
    tenant=None,
) -> float:
    """One user of `count` memories in a new tenant; returns the seconds taken.

    text="template" writes "I visited place 17."; text="realistic" writes
    sentences of 8-20 English words drawn by frequency (seeded), a source message
    of the same kind and a context of a few such words. With `tenant`, the user
    is added to that existing tenant instead of a new one.
    """
    import numpy as np
    from django.db import transaction

    from accounts.services import tenant_create
    from memories import outbox, writes
    from memories.models import Memory, MemoryEvent, MemorySource, Message
    from memories.providers.embeddings import get_embedder
    from memories.search.document import keyword_body
    from memories.vectorstores import Namespace, VectorRecord, get_vector_store

    if text not in ("template", "realistic"):
        raise ValueError(f"unknown text kind {text!r}")
    started = time.perf_counter()
    if tenant is None:
        tenant = tenant_create(slug=tenant_slug)
    embedder = get_embedder()
    store = get_vector_store()
    namespace = Namespace(tenant_id=tenant.pk, user_id=user_id)
    rng = np.random.default_rng(seed)
    # Its own generator, so that the vectors are those of the template texts.
    words_rng = np.random.default_rng([seed, 1])
    first_day = datetime(2024, 1, 1, tzinfo=UTC)
    for start in range(0, count, GENERATE_BATCH):
        size = min(GENERATE_BATCH, count - start)
        vectors = rng.standard_normal((size, embedder.dimension)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        if text == "realistic":
            texts = sentences(words_rng, size, 8, 20)
            message_texts = sentences(words_rng, size, 8, 20)
            contexts = [line.rstrip(".") for line in sentences(words_rng, size, 2, 5)]
            bodies = [keyword_body(speaker="", text=line) for line in texts]
        else:
            texts = [f"I visited place {start + i}." for i in range(size)]
            message_texts = [
                f"Today I visited place {start + i} with friend "
                f"{(start + i) % 97} and bought item {(start + i) % 31}."
                for i in range(size)
            ]
            contexts = [f"friend {(start + i) % 97}" for i in range(size)]
            bodies = texts
        with transaction.atomic():
            messages = Message.objects.bulk_create(
                [
                    Message(
                        tenant=tenant,
                        user_id=user_id,
                        text=message_texts[i],
                        client_message_id=f"msg-{start + i}",
                        sent_at=first_day + timedelta(minutes=start + i),
                    )
                    for i in range(size)
                ]
            )
            memories = Memory.objects.bulk_create(
                [
                    Memory(
                        tenant=tenant,
                        user_id=user_id,
                        text=texts[i],
                        content_hash=writes.memory_digest(
                            kind="fact", role="", speaker="", text=texts[i]
                        ),
                        search_body=bodies[i],
                        context_text=contexts[i],
                        embedding_model=embedder.model_name,
                        embedding_dimension=embedder.dimension,
                        embedding=vectors[i].astype("<f4").tobytes(),
                        source_message=message,
                        happened_at=message.sent_at,
                        updated_by="bench",
                    )
                    for i, message in enumerate(messages)
                ]
            )
            MemorySource.objects.bulk_create(
                [
                    MemorySource(memory=memory, message=memory.source_message)
                    for memory in memories
                ]
            )
            MemoryEvent.objects.bulk_create(
                [
                    MemoryEvent(
                        memory=memory,
                        action=MemoryEvent.Action.ADD,
                        new_text=memory.text,
                        actor="bench",
                        message=memory.source_message,
                    )
                    for memory in memories
                ]
                + [
                    MemoryEvent(
                        memory=memory,
                        action=MemoryEvent.Action.UPDATE,
                        old_text=f"I used to live in town {memory.pk}.",
                        new_text=memory.text,
                        actor="bench",
                    )
                    for memory in memories[::10]
                ]
            )
        store.put(
            namespace=namespace,
            records=[
                VectorRecord(
                    key=str(memory.vector_key),
                    vector=vectors[i],
                    metadata=outbox.vector_metadata(memory),
                )
                for i, memory in enumerate(memories)
            ],
        )
    return time.perf_counter() - started


# -- the S3 Vectors stand-in, served over HTTP ----------------------------------------
def serve_stand_in(region: str) -> ThreadingHTTPServer:
    """Answer S3 Vectors requests on 127.0.0.1 from the stand-in in this process.

    Each request is handed to moto's own dispatcher (the one the in-process mock
    uses), under the AWS host name, so it reaches the extended fake and is
    counted there.
    """
    from botocore.awsrequest import AWSPreparedRequest
    from botocore.compat import HTTPHeaders
    from moto.core.models import botocore_stubber

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = HTTPHeaders()
            for name, value in self.headers.items():
                headers[name] = value
            url = f"https://s3vectors.{region}.api.aws{self.path}"
            request = AWSPreparedRequest(
                self.command, url, headers, body, stream_output=False
            )
            status, response_headers, payload = botocore_stubber.process_request(
                request
            )
            data = payload.encode() if isinstance(payload, str) else payload or b""
            self.send_response(status)
            for name, value in (response_headers or {}).items():
                if name.lower() not in ("content-length", "connection"):
                    self.send_header(name, str(value))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_DELETE = do_POST

        def log_message(self, format, *args) -> None:  # noqa: A002
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# -- one phase (in a fresh subprocess) -------------------------------------------------
class CountingStore:
    """Wraps the local store; counts calls by method."""

    COUNTED = ("put", "delete", "get", "query", "list_keys", "count", "scan")

    def __init__(self, inner) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str):
        attribute = getattr(self.inner, name)
        if name not in self.COUNTED:
            return attribute

        def counted(*args, **kwargs):
            self.calls[name] += 1
            return attribute(*args, **kwargs)

        return counted


def run_phase(phase: str, tenant_slug: str, traced: bool) -> dict:
    from django.core.management import call_command
    from django.db import connection

    from memories.vectorstores import get_vector_store, use_vector_store

    counting = None
    connection.ensure_connection()
    if phase == "forget":
        store = get_vector_store()
        if os.environ.get("LTM_VECTOR_STORE", "local") == "local":
            counting = CountingStore(store)
            use_vector_store(counting)
    rss_before = max_rss_mib()
    if traced:
        tracemalloc.start()
    started = time.perf_counter()
    out = StringIO()
    if phase == "export":
        with tempfile.TemporaryDirectory() as directory:
            target = Path(directory, "export.json")
            call_command(
                "export_user_data",
                "--tenant",
                tenant_slug,
                USER_ID,
                "--output",
                str(target),
                "--no-progress",
                stdout=out,
            )
            size = target.stat().st_size
    else:
        call_command(
            "forget_user", "--tenant", tenant_slug, USER_ID, "--no-progress", stdout=out
        )
        size = 0
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] if traced else None
    return {
        "seconds": seconds,
        "rss_before_mib": rss_before,
        "rss_peak_mib": max_rss_mib(),
        "traced_peak_mib": peak / 2**20 if peak is not None else None,
        "store_calls": dict(counting.calls) if counting else None,
        "output_bytes": size,
        "report": out.getvalue().strip().splitlines()[-2:],
    }


class Launcher:
    """A small process, started before this one grows, that starts the phases.

    On Linux ru_maxrss survives exec, and a child forked from a process of
    several hundred MiB starts its count there: started from this launcher
    instead, each phase counts from a bare interpreter.
    """

    def __init__(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - our own script
            [sys.executable, __file__, "--launcher"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, command: list[str], env: dict) -> dict:
        self.process.stdin.write(json.dumps({"command": command, "env": env}) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def serve_launches() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        finished = subprocess.run(  # noqa: S603 - our own script
            request["command"],
            env=request["env"],
            capture_output=True,
            text=True,
            check=False,
        )
        print(
            json.dumps(
                {
                    "returncode": finished.returncode,
                    "stdout": finished.stdout,
                    "stderr": finished.stderr,
                }
            ),
            flush=True,
        )


def phase_in_subprocess(
    launcher: Launcher,
    phase: str,
    tenant_slug: str,
    traced: bool,
    args,
    data_dir: str,
    extra_env: dict,
) -> dict:
    command = [
        sys.executable,
        __file__,
        "--phase",
        phase,
        "--tenant",
        tenant_slug,
        "--data-dir",
        data_dir,
    ]
    command += ["--traced"] if traced else []
    command += ["--s3"] if args.s3 else []
    command += ["--keep-db-url"] if args.keep_db_url else []
    finished = launcher.run(command, {**os.environ, **extra_env})
    if finished["returncode"] != 0:
        sys.exit(f"{phase} failed:\n{finished['stdout']}\n{finished['stderr']}")
    return json.loads(finished["stdout"].splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", type=int, default=100_000)
    parser.add_argument("--s3", action="store_true", help="S3 Vectors' stand-in")
    parser.add_argument("--keep-db-url", action="store_true")
    # Internal: run one phase and print its figures as JSON.
    parser.add_argument("--phase", choices=["export", "forget"], help=argparse.SUPPRESS)
    parser.add_argument("--tenant", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--launcher", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.launcher:
        serve_launches()
        return
    if args.phase:
        configure(args.data_dir, keep_db_url=args.keep_db_url, s3=args.s3)
        print(json.dumps(run_phase(args.phase, args.tenant, args.traced)))
        return

    launcher = Launcher()  # first, while this process is small
    data_dir = tempfile.mkdtemp(prefix="ltm-userbench-")
    try:
        configure(data_dir, keep_db_url=args.keep_db_url, s3=args.s3)
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        suffix = f"-{int(time.time())}"
        tenants = [slug + suffix for slug in TENANTS]
        if args.s3:
            from tests.fakes.s3vectors import fake_s3vectors

            with fake_s3vectors() as fake:
                fake.client().create_vector_bucket(vectorBucketName=BUCKET)
                server = serve_stand_in(fake.region)
                endpoint = f"http://127.0.0.1:{server.server_address[1]}"
                # Only the phases' subprocesses go over HTTP; this process's own
                # calls (generating) are answered in-process by the mock.
                children_env = {"LTM_S3VECTORS_ENDPOINT_URL": endpoint}
                try:
                    bench(launcher, args, data_dir, tenants, fake, children_env)
                finally:
                    server.shutdown()
        else:
            bench(launcher, args, data_dir, tenants, None, {})
    finally:
        launcher.close()
        # The SQLite files of 100,000 memories weigh about 1.5 GB.
        shutil.rmtree(data_dir, ignore_errors=True)


def bench(
    launcher: Launcher, args, data_dir: str, tenants: list[str], fake, extra_env: dict
) -> None:
    store_name = "S3 Vectors stand-in over HTTP" if fake else "local store"
    print(
        f"{args.memories:,} memories of one user, {store_name}, "
        f"{'DATABASE_URL' if args.keep_db_url else 'SQLite'}"
    )
    for seed, slug in enumerate(tenants):
        seconds = generate(slug, args.memories, seed)
        print(f"generated {slug}: {seconds:.1f} s")
    from django.db import connection

    if connection.vendor == "postgresql":
        # As autovacuum would soon after: statistics taken before the bulk load
        # would make the planner scan whole tables for a batch of ids.
        with connection.cursor() as cursor:
            cursor.execute(
                "ANALYZE memories_memory, memories_memoryevent, memories_message, "
                "memories_memorysource, memories_vectoroperation"
            )
    for phase in ("export", "forget"):
        figures = {}
        for traced, slug in ((False, tenants[0]), (True, tenants[1])):
            if fake:
                fake.reset_calls()
            figures[traced] = phase_in_subprocess(
                launcher, phase, slug, traced, args, data_dir, extra_env
            )
            if fake:
                figures[traced]["store_calls"] = dict(fake.calls)
        plain, traced = figures[False], figures[True]
        print(
            f"{phase}: {plain['seconds']:.1f} s; ru_maxrss {plain['rss_peak_mib']:.0f} "
            f"MiB (before the phase {plain['rss_before_mib']:.0f} MiB); "
            f"tracemalloc peak {traced['traced_peak_mib']:.1f} MiB "
            f"(traced run {traced['seconds']:.1f} s); "
            f"vector-store calls {plain['store_calls']}"
            + (
                f"; file {plain['output_bytes'] / 2**20:.1f} MiB"
                if phase == "export"
                else ""
            )
        )
        if phase == "forget":
            for line in plain["report"]:
                print(f"  {line.strip()}")
            deletes = plain["store_calls"].get("DeleteVectors" if fake else "delete", 0)
            print(
                f"  deletes: {deletes} call(s); lower bound on S3 Vectors "
                f"ceil({args.memories}/500) = {math.ceil(args.memories / 500)}"
            )


if __name__ == "__main__":
    main()
