"""The service's own Prometheus series: language model calls and tokens, the
embedder's and the vector store's calls, and, read at each scrape, the vector
outbox's backlog and the memories and users of the largest tenants."""

import time
from datetime import timedelta

from amqp.exceptions import ChannelError, NotFound
from django.conf import settings
from django.db.models import Count, Min
from django.utils import timezone
from opentelemetry import trace
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from ltm_project.metrics import LATENCY_BUCKETS

model_calls = Counter(
    "ltm_model_calls",
    "Language model calls, by purpose and outcome (ok, invalid, failed).",
    ["purpose", "outcome"],
)
model_tokens = Counter(
    "ltm_model_tokens",
    "Tokens the language model reported, by purpose and direction.",
    ["purpose", "direction"],
)
embedding_latency = Histogram(
    "ltm_embedding_duration_seconds",
    "Time of one embedding call (a batch of texts), by provider.",
    ["provider"],
    buckets=LATENCY_BUCKETS,
)
embedding_errors = Counter(
    "ltm_embedding_errors", "Embedding calls that failed, by provider.", ["provider"]
)
vector_store_latency = Histogram(
    "ltm_vector_store_duration_seconds",
    "Time of one vector store call, by store and operation.",
    ["store", "operation"],
    buckets=LATENCY_BUCKETS,
)
vector_store_errors = Counter(
    "ltm_vector_store_errors",
    "Vector store calls that failed, by store and operation.",
    ["store", "operation"],
)


task_wait = Histogram(
    "ltm_task_wait_seconds",
    "Time a task waited in the broker's queue before a worker took it, by task.",
    ["task"],
    buckets=LATENCY_BUCKETS,
)
task_duration = Histogram(
    "ltm_task_duration_seconds",
    "Time a task ran in a worker, by task and how it ended (SUCCESS, RETRY, ...).",
    ["task", "state"],
    buckets=LATENCY_BUCKETS,
)


def count_model_calls(calls: list) -> None:
    for call in calls:
        model_calls.labels(call.purpose, call.outcome).inc()
        model_tokens.labels(call.purpose, "input").inc(call.input_tokens)
        model_tokens.labels(call.purpose, "output").inc(call.output_tokens)


tracer = trace.get_tracer("ltm")


class _Timed:
    """Observes one call's time, counts it as an error if it raises, and traces
    it as a span (a no-op unless tracing is on)."""

    def __init__(self, histogram, errors, labels: tuple, span: str, **attributes):
        self.histogram, self.errors, self.labels = histogram, errors, labels
        self.span = tracer.start_as_current_span(span, attributes=attributes)

    def __enter__(self) -> None:
        self.span.__enter__()
        self.started = time.perf_counter()

    def __exit__(self, kind, error, traceback) -> None:
        self.histogram.labels(*self.labels).observe(time.perf_counter() - self.started)
        if kind is not None:
            self.errors.labels(*self.labels).inc()
        self.span.__exit__(kind, error, traceback)


def traced(name: str, **attributes):
    """A span of the service's own around a block (keyword search, model calls)."""
    return tracer.start_as_current_span(name, attributes=attributes)


class TimedEmbedder:
    """The embedder, with each `embed` call timed."""

    def __init__(self, inner, provider: str) -> None:
        self.inner, self.provider = inner, provider

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def embed(self, texts, *args, **kwargs):
        with _Timed(
            embedding_latency,
            embedding_errors,
            (self.provider,),
            "ltm.embedding",
            provider=self.provider,
            texts=len(texts),
        ):
            return self.inner.embed(texts, *args, **kwargs)


# The calls a request waits on; listing and scanning are operators' commands.
TIMED_STORE_OPERATIONS = (
    "put",
    "delete",
    "get",
    "query",
    "query_many",
    "hybrid_query",
    "ping",
)


class TimedVectorStore:
    """The vector store, with the calls requests wait on timed."""

    def __init__(self, inner, store: str) -> None:
        self.inner, self.store = inner, store

    def __getattr__(self, name):
        attribute = getattr(self.inner, name)
        if name not in TIMED_STORE_OPERATIONS:
            return attribute

        def timed(*args, **kwargs):
            with _Timed(
                vector_store_latency,
                vector_store_errors,
                (self.store, name),
                f"ltm.vector_store.{name}",
                store=self.store,
            ):
                return attribute(*args, **kwargs)

        return timed


class StateCollector:
    """Series read from the database at each scrape."""

    def collect(self):
        from memories.models import Memory, VectorOperation

        pending = VectorOperation.objects.filter(applied_at__isnull=True).aggregate(
            count=Count("id"), oldest=Min("created_at")
        )
        backlog = GaugeMetricFamily(
            "ltm_outbox_pending",
            "Vector operations committed but not yet written to the store.",
        )
        backlog.add_metric([], pending["count"])
        yield backlog
        age = GaugeMetricFamily(
            "ltm_outbox_oldest_pending_age_seconds",
            "Age of the oldest vector operation not yet written (0: none).",
        )
        oldest = pending["oldest"]
        age.add_metric([], (timezone.now() - oldest).total_seconds() if oldest else 0.0)
        yield age
        yield from _queue_series()
        yield from _tenant_series(Memory)


def _queue_series():
    """Tasks waiting in this deployment's queue on the broker (none without one)."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return
    from ltm_project.celery import app

    depth = GaugeMetricFamily(
        "ltm_task_queue_depth",
        "Tasks waiting in the broker's queue for a worker (-1: the broker did "
        "not answer).",
        labels=["queue"],
    )
    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    try:
        with app.connection_for_read() as connection:
            waiting = connection.default_channel.queue_declare(
                queue=queue, passive=True
            ).message_count
    except (NotFound, ChannelError) as exc:
        # No such queue (404): none was sent to it yet, or Redis emptied it.
        waiting = 0 if str(getattr(exc, "reply_code", "")) == "404" else -1
    except Exception:  # noqa: BLE001 - a scrape never fails for the broker
        waiting = -1
    depth.add_metric([queue], waiting)
    yield depth


_tenants_cache: dict = {"at": None, "rows": []}


def _tenant_series(memory_model):
    """Memories and users of the LTM_METRICS_TENANTS largest tenants, the rest
    summed as "other": a bounded number of series however many tenants there
    are. Counted at most once every LTM_METRICS_TENANT_SECONDS."""
    now = timezone.now()
    refresh = timedelta(seconds=settings.LTM_METRICS_TENANT_SECONDS)
    if _tenants_cache["at"] is None or now - _tenants_cache["at"] >= refresh:
        _tenants_cache["rows"] = list(
            memory_model.objects.filter(status=memory_model.Status.ACTIVE)
            .values("tenant__slug")
            .annotate(memories=Count("id"), users=Count("user_id", distinct=True))
            .order_by("-memories", "tenant__slug")
        )
        _tenants_cache["at"] = now
    rows = _tenants_cache["rows"]
    shown_count = settings.LTM_METRICS_TENANTS
    shown, rest = rows[:shown_count], rows[shown_count:]
    memories = GaugeMetricFamily(
        "ltm_tenant_memories", "Active memories of a tenant.", labels=["tenant"]
    )
    users = GaugeMetricFamily(
        "ltm_tenant_users", "End users with active memories.", labels=["tenant"]
    )
    for row in shown:
        memories.add_metric([row["tenant__slug"]], row["memories"])
        users.add_metric([row["tenant__slug"]], row["users"])
    if rest:
        memories.add_metric(["other"], sum(row["memories"] for row in rest))
        users.add_metric(["other"], sum(row["users"] for row in rest))
    yield memories
    yield users
