"""Probes for orchestrators: /healthz (the process answers) and /readyz (it can
serve: database, cache, vector store and embedding model).

Answered by a middleware ahead of all others: a probe comes from the
orchestrator, addressed by the pod's IP rather than an allowed host name, over
plain HTTP behind the TLS proxy, and with no token. Neither answer says more
than which part failed and its exception's class; the log has the rest.
"""

import logging
import time
import uuid
from collections.abc import Callable

from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse

from ltm_project.errors import error_body, only_reads

logger = logging.getLogger(__name__)

ALIVE_PATH = "/healthz"
READY_PATH = "/readyz"


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _cache() -> None:
    key = f"ltm:readyz:{uuid.uuid4().hex}"
    cache.set(key, "1", timeout=10)
    try:
        if cache.get(key) != "1":
            raise RuntimeError("the cache did not keep a value")
    finally:
        cache.delete(key)


def _vector_store() -> None:
    from memories.vectorstores import get_vector_store

    get_vector_store().ping()


def _embedding_model() -> None:
    # Loads the model on the first probe of a process that has not yet.
    from memories.providers.embeddings import get_embedder

    get_embedder()


READINESS_CHECKS: dict[str, Callable[[], None]] = {
    "database": _database,
    "cache": _cache,
    "vectorStore": _vector_store,
    "embeddingModel": _embedding_model,
}


def readiness() -> tuple[bool, dict]:
    """Run every check; whether all passed, and each one's outcome and time."""
    results = {}
    for name, check in READINESS_CHECKS.items():
        started = time.perf_counter()
        try:
            check()
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            logger.warning("Readiness check %s failed: %s", name, exc, exc_info=True)
            outcome = {"ok": False, "error": type(exc).__name__}
        else:
            outcome = {"ok": True}
        outcome["ms"] = round((time.perf_counter() - started) * 1000, 1)
        results[name] = outcome
    return all(outcome["ok"] for outcome in results.values()), results


def _probe(request: HttpRequest) -> HttpResponse:
    if refused := only_reads(request):
        return refused
    if request.path == ALIVE_PATH:
        return JsonResponse({"status": "alive"})
    ready, checks = readiness()
    if ready:
        return JsonResponse({"status": "ready", "checks": checks})
    failed = ", ".join(name for name, outcome in checks.items() if not outcome["ok"])
    return JsonResponse(
        error_body("not_ready", f"Not ready: {failed}.", {"checks": checks}),
        status=503,
    )


def health_middleware(get_response):
    def middleware(request: HttpRequest) -> HttpResponse:
        if request.path in (ALIVE_PATH, READY_PATH):
            response = _probe(request)
            response["Cache-Control"] = "no-store"
            return response
        return get_response(request)

    return middleware
