"""Prometheus metrics at /metrics: every request's latency and status, and the
service's own series (memories/observability.py).

A middleware ahead of all others times each request and answers /metrics
itself, for the same reasons the probes are answered first (ltm_project/health):
Prometheus scrapes a worker by its address, over plain HTTP, with no tenant
token. The answer is given to LTM_METRICS_NETWORKS (loopback by default) or to
a bearer of LTM_METRICS_TOKEN, and nobody when LTM_METRICS_ENABLED is false.

Under gunicorn with several workers, set PROMETHEUS_MULTIPROC_DIR to an empty
directory: every worker then writes its series there and any worker's answer
sums them (gunicorn.conf.py clears the directory at start and drops a dead
worker's gauges).
"""

import ipaddress
import os
import secrets
import time
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

from ltm_project.errors import error_body, only_reads

METRICS_PATH = "/metrics"

# A *_created sample per series doubles the answer and says little.
disable_created_metrics()
# Every process writes its series there (gunicorn's workers, Celery's): the
# directory must exist before the first one is counted.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

# Seconds; up to the request time budget and past it.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

http_requests = Counter(
    "ltm_http_requests",
    "HTTP requests answered, by endpoint, method and status.",
    ["endpoint", "method", "status"],
)
http_latency = Histogram(
    "ltm_http_request_duration_seconds",
    "Time to answer an HTTP request, by endpoint and method.",
    ["endpoint", "method"],
    buckets=LATENCY_BUCKETS,
)

# Requests that reach no view are one series, whatever their path: a scan of
# random paths must not grow the series without bound.
UNMATCHED = "unmatched"


def endpoint_of(request: HttpRequest) -> str:
    """The route's name (bounded: one per view), never the raw path."""
    match = getattr(request, "resolver_match", None)
    if match is not None and match.view_name:
        return match.view_name
    if request.path in _OWN_PATHS:
        return request.path.lstrip("/")
    return UNMATCHED


_OWN_PATHS = {METRICS_PATH, "/healthz", "/readyz"}
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def method_of(request: HttpRequest) -> str:
    return request.method if request.method in _METHODS else "other"


@lru_cache(maxsize=8)
def _networks(setting: str) -> tuple:
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False)
        for part in setting.split(",")
        if part.strip()
    )


def _may_read(request: HttpRequest) -> bool:
    token = settings.LTM_METRICS_TOKEN
    given = request.headers.get("Authorization", "")
    if token and secrets.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    allowed = _networks(settings.LTM_METRICS_NETWORKS)
    return any(address in network for network in allowed)


def exposition() -> bytes:
    """The text every scrape gets: this process's series, or all workers'."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    from memories.observability import StateCollector

    registry_with_state = CollectorRegistry()
    registry_with_state.register(StateCollector())
    return generate_latest(registry) + generate_latest(registry_with_state)


def _metrics_answer(request: HttpRequest) -> HttpResponse:
    if not settings.LTM_METRICS_ENABLED:
        return JsonResponse(
            error_body("not_found", "Metrics are turned off (LTM_METRICS_ENABLED)."),
            status=404,
        )
    if not _may_read(request):
        return JsonResponse(
            error_body(
                "permission_denied",
                "Metrics are served to LTM_METRICS_NETWORKS or with LTM_METRICS_TOKEN.",
            ),
            status=403,
        )
    if refused := only_reads(request):
        return refused
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)


def metrics_middleware(get_response):
    def middleware(request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        if request.path == METRICS_PATH:
            response = _metrics_answer(request)
        else:
            response = get_response(request)
        if settings.LTM_METRICS_ENABLED:
            endpoint = endpoint_of(request)
            method = method_of(request)
            http_latency.labels(endpoint, method).observe(time.perf_counter() - started)
            http_requests.labels(endpoint, method, response.status_code).inc()
        return response

    return middleware
