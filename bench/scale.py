"""Search, ingestion, disk and memory as one user's memories grow, and many tenants.

    python bench/scale.py [--memories 1000 10000 100000] [--s3] [--keep-db-url]
    python bench/scale.py --memories 1000000
    python bench/scale.py --many [--tenants 100] [--users-per-tenant 10]
                          [--per-user 1000]

For each N, a fresh data directory gets one tenant whose user holds N memories
from the generator of bench/user_data.py with realistic text: sentences of 8-20
English words drawn by frequency rank (probability ∝ 1/rank over wordfreq's 20,000
most frequent words), a source message and a context of such words each, random
unit vectors as embeddings (embedding that many texts would take hours); rows are
bulk-created 5,000 at a time and the vectors put in batches. Generation runs in
one subprocess and the measuring in another, fresh one, so that its resident
memory is its own:

- search: 110 queries of 6-12 such words (another seed), the recall service as
  the API calls it (embed the query with the real embedder, hybrid search, top
  10); 10 warm-up queries, then 100 timed: p50 and p95. Beside each, untimed for
  the total, the vector store's query (top 100) and the keyword ranking (limit
  100) for the same query: their p50 show where the time goes.
- resident memory: the measuring process's private memory (RssAnon) before the
  first search (Django, the database connection and the embedding model loaded)
  and after the last, so that what the vector store keeps in memory for the user
  shows; and VmRSS after, which also counts the database's pages read through
  SQLite's memory map (the operating system's page cache, shared by every
  process of the machine).
- ingestion: then 20 new messages of such words for the same user through
  POST /api/v1/message (Django's in-process client, a real token): p50 and mean
  per message, and the ratio to the smallest N's (the aim: at most 2x from 1,000
  to 100,000 memories).
- disk: the SQLite database (with its -wal) and the local vector store's file
  (LTM_LOCAL_VECTOR_STORE_PATH, with its -wal) after generating; on PostgreSQL
  (--keep-db-url, DATABASE_URL kept, tables vacuumed and analyzed after generating as
  autovacuum would soon do) the database's whole size, every run's tenants
  included, since they stay there.

With --s3 the vector store is the test suite's stand-in for S3 Vectors (moto,
extended), served over HTTP on 127.0.0.1 by this process, so that the measuring
processes are clients only, as with AWS, each size in a bucket of its own; the
calls the measuring process makes to it are counted by operation, per search
and per message. The stand-in keeps every vector in this process's memory and
answers a query by scanning the index in Python: keep --s3 runs to 10,000
memories or so.

--many generates, in one database, a lone user of --per-user memories in a tenant
of their own, then --tenants tenants of --users-per-tenant users of --per-user
memories each (by default 100 x 10 x 1,000: a million memories). It then times
search for the lone user (10 warm-up queries, 100 timed) and for 20 users spread
over the tenants (2 warm-up queries each, then 20 timed each), so that one sees
whether a user's search depends on the others' data. Each data directory is
removed once measured.
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import machine  # bench/machine.py, beside this script
import user_data  # bench/user_data.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
QUERY_SEED = 1_000_003
MESSAGE_SEED = 2_000_003
QUERIES = 110
WARM_UP = 10
MESSAGES = 20
MANY_USERS_MEASURED = 20
MANY_QUERIES_PER_USER = 20
MANY_WARM_UP_PER_USER = 2
LONE_TENANT = "scale-lone"


# -- configuration and helpers (in the subprocesses) -------------------------------
def configure(data_dir: str, *, keep_db_url: bool, s3: bool, bucket: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ltm_project.settings")
    os.environ["LTM_SECRET_KEY"] = "bench-only-secret"  # noqa: S105
    os.environ["LTM_DATA_DIR"] = data_dir
    Path(data_dir, "static").mkdir(parents=True, exist_ok=True)
    os.environ["LTM_RATE_LIMIT"] = ""
    os.environ["LTM_ALLOWED_HOSTS"] = "testserver"
    # The in-process client speaks plain HTTP; no TLS proxy redirects it.
    os.environ["LTM_SSL_REDIRECT"] = "false"
    os.environ.pop("LTM_LOCAL_VECTOR_STORE_PATH", None)
    if not keep_db_url:
        os.environ.pop("DATABASE_URL", None)
    if s3:
        os.environ["LTM_VECTOR_STORE"] = "s3vectors"
        os.environ["LTM_S3VECTORS_BUCKET"] = bucket
        os.environ["LTM_S3VECTORS_REGION"] = "us-east-1"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def status_mib(name: str) -> float:
    """A field of /proc/self/status (VmRSS, RssAnon...), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def max_rss_mib() -> float:
    # Linux reports kibibytes.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def file_mib(path: str) -> float:
    return (
        sum(
            Path(name).stat().st_size
            for name in (path, f"{path}-wal")
            if Path(name).exists()
        )
        / 2**20
    )


def disk_mib() -> tuple[float, float]:
    """The database's size and the local vector store file's, in MiB."""
    from django.conf import settings
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_database_size(current_database())")
            database = cursor.fetchone()[0] / 2**20
    else:
        # The log copied in first: how much of it is left depends on when the
        # checkpoint thread last ran.
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        database = file_mib(str(settings.DATABASES["default"]["NAME"]))
    return database, file_mib(str(settings.LTM_LOCAL_VECTOR_STORE_PATH))


def analyze() -> None:
    from django.db import connection

    if connection.vendor == "postgresql":
        # As autovacuum would soon after: statistics taken before the bulk load
        # would make the planner scan whole tables, and until a vacuum every GIN
        # search reads the index's pending list of the rows just inserted.
        with connection.cursor() as cursor:
            cursor.execute(
                "VACUUM ANALYZE memories_memory, memories_memoryevent, "
                "memories_message, memories_memorysource, memories_vectoroperation"
            )


class CallCounter:
    """Counts the S3 Vectors calls of this process by operation, while active."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.active = False
        from botocore.client import BaseClient

        original = BaseClient._make_api_call
        counter = self

        def counted(client, operation_name, api_params):
            if counter.active:
                counter.calls[operation_name] += 1
            return original(client, operation_name, api_params)

        BaseClient._make_api_call = counted

    def per(self, times: int) -> dict[str, float]:
        return {name: count / times for name, count in sorted(self.calls.items())}


def queries() -> list[str]:
    import numpy as np

    return user_data.sentences(np.random.default_rng(QUERY_SEED), QUERIES, 6, 12)


def slug_for(label: str) -> str:
    return f"scale-{label}-{int(time.time())}"


# -- generation (a subprocess) ------------------------------------------------------
def run_generate(args) -> dict:
    from django.core.management import call_command

    from memories.providers.embeddings import get_embedder

    call_command("migrate", verbosity=0)
    # A fresh data directory builds the embedding model first: not generation.
    get_embedder().embed(["warm up"])
    started = time.perf_counter()
    slug = slug_for(str(args.count))
    user_data.generate(slug, args.count, seed=args.count, text="realistic")
    analyze()
    seconds = time.perf_counter() - started
    database, vectors = disk_mib()
    return {"seconds": seconds, "slug": slug, "db_mib": database, "vec_mib": vectors}


def many_slug(stamp: int, index: int) -> str:
    return f"scale-many-{stamp}-{index}"


def many_user_ids(args) -> list[tuple[int, str]]:
    """(tenant index, user id) of every user of the many-tenants case."""
    return [
        (tenant, f"user-{tenant}-{user}")
        for tenant in range(args.tenants)
        for user in range(args.users_per_tenant)
    ]


def run_generate_many(args) -> dict:
    from django.core.management import call_command

    from accounts.services import tenant_create
    from memories.providers.embeddings import get_embedder

    call_command("migrate", verbosity=0)
    # A fresh data directory builds the embedding model first: not generation.
    get_embedder().embed(["warm up"])
    started = time.perf_counter()
    stamp = int(time.time())
    user_data.generate(
        f"{LONE_TENANT}-{stamp}", args.per_user, seed=1, text="realistic"
    )
    tenants = [
        tenant_create(slug=many_slug(stamp, index)) for index in range(args.tenants)
    ]
    for seed, (tenant, user_id) in enumerate(many_user_ids(args), start=2):
        user_data.generate(
            "",
            args.per_user,
            seed=seed,
            text="realistic",
            user_id=user_id,
            tenant=tenants[tenant],
        )
    analyze()
    seconds = time.perf_counter() - started
    database, vectors = disk_mib()
    return {
        "seconds": seconds,
        "stamp": stamp,
        "db_mib": database,
        "vec_mib": vectors,
    }


# -- measuring (a fresh subprocess) -------------------------------------------------
def time_searches(tenant, user_id: str, texts: list[str], warm_up: int, counter=None):
    """Times the recall service on `texts` after `warm_up` of them; split p50s."""
    from memories.providers.embeddings import get_embedder
    from memories.search import keyword_ranking
    from memories.selectors import memory_recall
    from memories.vectorstores import Namespace, get_vector_store

    namespace = Namespace(tenant_id=tenant.pk, user_id=user_id)
    vectors = get_embedder().embed(texts)
    total, store_times, keyword_times = [], [], []
    for index, (query, vector) in enumerate(zip(texts, vectors, strict=True)):
        timed = index >= warm_up
        if counter is not None:
            counter.active = timed
        started = time.perf_counter()
        memory_recall(tenant=tenant, user_id=user_id, query=query, top_k=10)
        elapsed = time.perf_counter() - started
        if counter is not None:
            counter.active = False
        started = time.perf_counter()
        get_vector_store().query(namespace=namespace, vector=vector, top_k=100)
        store = time.perf_counter() - started
        started = time.perf_counter()
        keyword_ranking(tenant=tenant, user_id=user_id, query=query, limit=100)
        keyword = time.perf_counter() - started
        if timed:
            total.append(elapsed * 1000)
            store_times.append(store * 1000)
            keyword_times.append(keyword * 1000)
    return total, store_times, keyword_times


def run_measure(args) -> dict:
    import numpy as np
    from django.db import connection
    from rest_framework.test import APIClient

    from accounts.models import Tenant
    from accounts.services import token_issue
    from memories.models import Memory
    from memories.providers.embeddings import get_embedder

    counter = CallCounter() if args.s3 else None
    connection.ensure_connection()
    tenant = Tenant.objects.get(slug=args.tenant)
    texts = queries()
    get_embedder().embed(["warm up"])
    private_before = status_mib("RssAnon")
    total, store_times, keyword_times = time_searches(
        tenant, user_data.USER_ID, texts, WARM_UP, counter
    )
    private_after, rss_after = status_mib("RssAnon"), status_mib("VmRSS")
    search_calls = counter.per(len(total)) if counter else None

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_issue(tenant=tenant).secret}")
    # The first request of a process loads the URLs and the API's modules once.
    client.post(
        "/api/v1/message",
        {"userId": "warm-up", "message": "I like green tea."},
        format="json",
    )
    messages = [
        f"I {line[0].lower()}{line[1:]}"
        for line in user_data.sentences(
            np.random.default_rng(MESSAGE_SEED), MESSAGES, 8, 20
        )
    ]
    before = Memory.objects.filter(tenant=tenant, user_id=user_data.USER_ID).count()
    if counter:
        counter.calls.clear()
    ingest = []
    for message in messages:
        if counter:
            counter.active = True
        started = time.perf_counter()
        response = client.post(
            "/api/v1/message",
            {"userId": user_data.USER_ID, "message": message},
            format="json",
        )
        ingest.append((time.perf_counter() - started) * 1000)
        if counter:
            counter.active = False
        if response.status_code != 200:
            raise SystemExit(f"/message: {response.status_code} {response.content!r}")
    added = Memory.objects.filter(tenant=tenant, user_id=user_data.USER_ID).count()
    return {
        "search_p50": statistics.median(total),
        "search_p95": percentile(total, 0.95),
        "vector_p50": statistics.median(store_times),
        "keyword_p50": statistics.median(keyword_times),
        "ingest_p50": statistics.median(ingest),
        "ingest_mean": statistics.mean(ingest),
        "memories_per_message": (added - before) / len(messages),
        "private_before": private_before,
        "private_after": private_after,
        "rss_after": rss_after,
        "search_calls": search_calls,
        "message_calls": counter.per(len(messages)) if counter else None,
    }


def run_measure_many(args) -> dict:
    from django.db import connection

    from accounts.models import Tenant

    connection.ensure_connection()
    texts = queries()
    lone = Tenant.objects.get(slug=f"{LONE_TENANT}-{args.stamp}")
    lone_total, _, _ = time_searches(lone, user_data.USER_ID, texts, WARM_UP)
    users = many_user_ids(args)
    step = max(1, len(users) // MANY_USERS_MEASURED)
    chosen = users[::step][:MANY_USERS_MEASURED]
    total = []
    per_user = MANY_WARM_UP_PER_USER + MANY_QUERIES_PER_USER
    for number, (tenant, user_id) in enumerate(chosen):
        start = number * per_user % (len(texts) - per_user)
        timed, _, _ = time_searches(
            Tenant.objects.get(slug=many_slug(args.stamp, tenant)),
            user_id,
            texts[start : start + per_user],
            MANY_WARM_UP_PER_USER,
        )
        total += timed
    return {
        "lone_p50": statistics.median(lone_total),
        "lone_p95": percentile(lone_total, 0.95),
        "many_p50": statistics.median(total),
        "many_p95": percentile(total, 0.95),
        "users_measured": len(chosen),
        "rss_max": max_rss_mib(),
    }


# -- the parent: launches, formats -----------------------------------------------
def child(launcher, args, mode: str, data_dir: str, env: dict, **extra) -> dict:
    command = [sys.executable, __file__, "--child", mode, "--data-dir", data_dir]
    command += ["--tenants", str(args.tenants)]
    command += ["--users-per-tenant", str(args.users_per_tenant)]
    command += ["--per-user", str(args.per_user)]
    for name, value in extra.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    command += ["--s3"] if args.s3 else []
    command += ["--keep-db-url"] if args.keep_db_url else []
    finished = launcher.run(command, env)
    if finished["returncode"] != 0:
        sys.exit(f"{mode} failed:\n{finished['stdout']}\n{finished['stderr']}")
    return json.loads(finished["stdout"].splitlines()[-1])


def calls_text(calls: dict[str, float] | None) -> str:
    if not calls:
        return "none"
    return ", ".join(f"{name} {count:g}" for name, count in calls.items())


HEADER = (
    f"{'memories':>9}  {'gen s':>6}  {'search p50':>10}  {'p95':>6}  "
    f"{'vector p50':>10}  {'keyword p50':>11}  {'ingest p50/mean ms':>18}  "
    f"{'db MiB':>7}  {'vectors MiB':>11}  private MiB (before/after search), RSS"
)


def row(count: int, generated: dict, measured: dict) -> str:
    ingest = f"{measured['ingest_p50']:.1f} / {measured['ingest_mean']:.1f}"
    rss = (
        f"{measured['private_before']:.0f} / {measured['private_after']:.0f}, "
        f"{measured['rss_after']:.0f}"
    )
    return (
        f"{count:>9,}  {generated['seconds']:>6.1f}  {measured['search_p50']:>10.1f}  "
        f"{measured['search_p95']:>6.1f}  {measured['vector_p50']:>10.1f}  "
        f"{measured['keyword_p50']:>11.1f}  {ingest:>18}  "
        f"{generated['db_mib']:>7.1f}  {generated['vec_mib']:>11.1f}  {rss}"
    )


def bench(launcher, args, root: str, fake, env: dict) -> None:
    store = "S3 Vectors stand-in over HTTP" if fake else "local vector store"
    database = "DATABASE_URL" if args.keep_db_url else "SQLite"
    print(f"machine: {machine.describe()}; {database}; {store}", flush=True)
    results = {}
    if args.memories:
        print(HEADER, flush=True)
    for count in args.memories:
        data_dir = str(Path(root, f"n{count}"))
        bucket = f"{user_data.BUCKET}-{count}"
        if fake:
            fake.client().create_vector_bucket(vectorBucketName=bucket)
        try:
            generated = child(
                launcher, args, "generate", data_dir, env, count=count, bucket=bucket
            )
            measured = child(
                launcher,
                args,
                "measure",
                data_dir,
                env,
                count=count,
                bucket=bucket,
                tenant=generated["slug"],
            )
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
        results[count] = measured
        print(row(count, generated, measured), flush=True)
    if results:
        smallest = min(results)
        base = results[smallest]
        print(f"ingestion per message against {smallest:,} memories (p50, mean):")
        for count, measured in results.items():
            print(
                f"  {count:>9,}: {measured['ingest_p50'] / base['ingest_p50']:.2f}x, "
                f"{measured['ingest_mean'] / base['ingest_mean']:.2f}x; "
                f"{measured['memories_per_message']:.1f} memories stored a message"
            )
        if fake:
            print("S3 Vectors calls of the measuring process:")
            for count, measured in results.items():
                print(
                    f"  {count:>9,}: per search {calls_text(measured['search_calls'])};"
                    f" per message {calls_text(measured['message_calls'])}"
                )
    if args.many:
        many(launcher, args, root, fake, env, results)


def many(launcher, args, root: str, fake, env: dict, results: dict) -> None:
    data_dir = str(Path(root, "many"))
    bucket = f"{user_data.BUCKET}-many"
    if fake:
        fake.client().create_vector_bucket(vectorBucketName=bucket)
    users = args.tenants * args.users_per_tenant
    try:
        generated = child(launcher, args, "generate-many", data_dir, env, bucket=bucket)
        measured = child(
            launcher,
            args,
            "measure-many",
            data_dir,
            env,
            bucket=bucket,
            stamp=generated["stamp"],
        )
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    print(
        f"many tenants: {args.tenants:,} tenants x {args.users_per_tenant:,} users x "
        f"{args.per_user:,} memories ({users * args.per_user:,} memories) and a lone "
        f"user of {args.per_user:,}: generated in {generated['seconds']:.1f} s; "
        f"db {generated['db_mib']:.1f} MiB, vectors {generated['vec_mib']:.1f} MiB"
    )
    alone = results.get(args.per_user)
    print(
        f"  search p50 / p95: {measured['many_p50']:.1f} / {measured['many_p95']:.1f}"
        f" ms over {measured['users_measured']} users x {MANY_QUERIES_PER_USER} "
        f"queries; the lone user in the same database {measured['lone_p50']:.1f} / "
        f"{measured['lone_p95']:.1f} ms"
        + (
            f"; a lone {args.per_user:,}-memory user in a database of their own "
            f"{alone['search_p50']:.1f} / {alone['search_p95']:.1f} ms"
            if alone
            else ""
        )
        + f"; ru_maxrss {measured['rss_max']:.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", type=int, nargs="+")
    parser.add_argument("--many", action="store_true", help="the many-tenants case")
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--users-per-tenant", type=int, default=10)
    parser.add_argument("--per-user", type=int, default=1000)
    parser.add_argument("--s3", action="store_true", help="S3 Vectors' stand-in")
    parser.add_argument("--keep-db-url", action="store_true")
    # Internal: one subprocess's work, printed as JSON.
    parser.add_argument(
        "--child",
        choices=["generate", "measure", "generate-many", "measure-many"],
        help=argparse.SUPPRESS,
    )
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bucket", default=user_data.BUCKET, help=argparse.SUPPRESS)
    parser.add_argument("--tenant", help=argparse.SUPPRESS)
    parser.add_argument("--stamp", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        configure(
            args.data_dir, keep_db_url=args.keep_db_url, s3=args.s3, bucket=args.bucket
        )
        work = {
            "generate": run_generate,
            "measure": run_measure,
            "generate-many": run_generate_many,
            "measure-many": run_measure_many,
        }[args.child]
        print(json.dumps(work(args)))
        return
    if args.memories is None:
        args.memories = [] if args.many else [1000, 10_000, 100_000]

    launcher = user_data.Launcher()  # first, while this process is small
    root = tempfile.mkdtemp(prefix="ltm-scale-")
    try:
        if args.s3:
            sys.path.insert(0, str(ROOT))
            from tests.fakes.s3vectors import fake_s3vectors

            with fake_s3vectors() as fake:
                server = user_data.serve_stand_in(fake.region)
                endpoint = f"http://127.0.0.1:{server.server_address[1]}"
                # The fake's credentials, set by the mock, go along.
                env = {**os.environ, "LTM_S3VECTORS_ENDPOINT_URL": endpoint}
                try:
                    bench(launcher, args, root, fake, env)
                finally:
                    server.shutdown()
        else:
            bench(launcher, args, root, None, dict(os.environ))
    finally:
        launcher.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
