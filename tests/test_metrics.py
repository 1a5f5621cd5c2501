"""/metrics: Prometheus exposition of requests, model calls, the embedder and
the vector store, the outbox's backlog and the largest tenants; guarded."""

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from memories.models import VectorOperation
from memories.providers.llm import reset_language_model
from memories.vectorstores import VectorStoreError, get_vector_store, use_vector_store
from tests.fakes.openai_server import FakeOpenAI
from tests.helpers import post_message
from tests.servers import create_tenant, fresh_database, gunicorn, service_env

pytestmark = pytest.mark.django_db


def scrape(client, **headers) -> dict[tuple, float]:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return samples(response.content.decode())


def samples(text: str) -> dict[tuple, float]:
    """{(sample name, sorted labels): value}"""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict, name: str, **labels) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_are_counted_by_route_name_method_and_status(client, client_a):
    search = {"userId": "u1", "query": "tea", "topK": 3}
    before = scrape(client)

    assert (
        client_a.post("/api/v1/memories/search", search, format="json").status_code
        == 200
    )
    assert (
        client_a.post("/api/v1/memories/search", {}, format="json").status_code == 400
    )
    client.get("/no/such/path/12345")

    after = scrape(client)
    route = {"endpoint": "v1:memory-search", "method": "POST"}
    for status in ("200", "400"):
        name = "ltm_http_requests_total"
        assert value(after, name, **route, status=status) == (
            value(before, name, **route, status=status) + 1
        )
    assert value(after, "ltm_http_request_duration_seconds_count", **route) == (
        value(before, "ltm_http_request_duration_seconds_count", **route) + 2
    )
    # A path no view serves is one series, never the path itself.
    unmatched = {"endpoint": "unmatched", "method": "GET", "status": "404"}
    assert value(after, "ltm_http_requests_total", **unmatched) >= 1
    assert all("12345" not in str(key) for key in after)


@pytest.mark.django_db(transaction=True)  # vectors are written after commit
def test_embedding_and_vector_store_calls_are_timed(client, client_a):
    before = scrape(client)

    post_message(client_a, "u1", "I moved to Lisbon last month.")

    after = scrape(client)
    embed = {"provider": "local"}
    assert value(after, "ltm_embedding_duration_seconds_count", **embed) > value(
        before, "ltm_embedding_duration_seconds_count", **embed
    )
    for operation in ("put", "query"):
        labels = {"store": "local", "operation": operation}
        name = "ltm_vector_store_duration_seconds_count"
        assert value(after, name, **labels) > value(before, name, **labels), operation


def test_model_calls_and_tokens_are_counted_by_purpose_and_outcome(
    client, client_a, settings
):
    fake = FakeOpenAI().start()
    try:
        settings.LTM_LLM_PROVIDER = "openai"
        settings.OPENAI_API_KEY = "sk-test-key"
        settings.OPENAI_BASE_URL = fake.base_url
        settings.LTM_LLM_MAX_RETRIES = 0
        settings.LTM_LLM_TIMEOUT_SECONDS = 5
        reset_language_model()
        fake.chat_responder = lambda body: (
            '{"operations": []}' if body.get("response_format") else "Noted."
        )
        before = scrape(client)

        post_message(client_a, "u1", "I keep bees.")
    finally:
        fake.stop()
        reset_language_model()

    after = scrape(client)
    grew = {
        key[1]: after[key] - before.get(key, 0.0)
        for key in after
        if key[0] == "ltm_model_calls_total" and after[key] > before.get(key, 0.0)
    }
    assert sum(grew.values()) == 2  # the memory call and the reply
    assert all(dict(labels)["outcome"] == "ok" for labels in grew)
    tokens = sum(
        after[key] - before.get(key, 0.0)
        for key in after
        if key[0] == "ltm_model_tokens_total"
    )
    assert tokens > 0


class _FailingWrites:
    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def put(self, **kwargs):
        raise VectorStoreError("injected: the store is down")


@pytest.mark.django_db(transaction=True)
def test_the_outbox_backlog_and_its_age_are_read_at_each_scrape(client, client_a):
    assert value(scrape(client), "ltm_outbox_pending") == 0
    use_vector_store(_FailingWrites(get_vector_store()))

    # The memory is kept; its vectors wait in the outbox.
    assert post_message(client_a, "u1", "I keep bees.").status_code == 200
    pending = VectorOperation.objects.filter(applied_at__isnull=True).count()
    found = scrape(client)
    assert pending >= 1
    assert value(found, "ltm_outbox_pending") == pending
    assert value(found, "ltm_outbox_oldest_pending_age_seconds") >= 0


def test_tenants_beyond_the_largest_are_summed_as_other(
    client, client_a, client_b, settings
):
    settings.LTM_METRICS_TENANTS = 1
    settings.LTM_METRICS_TENANT_SECONDS = 0
    post_message(client_a, "u1", "I keep bees.")
    post_message(client_a, "u2", "I play chess.")
    post_message(client_b, "u1", "I live in Porto.")

    found = scrape(client)

    tenants = {
        dict(key[1])["tenant"] for key in found if key[0] == "ltm_tenant_memories"
    }
    assert tenants == {"tenant-a", "other"}
    assert value(found, "ltm_tenant_users", tenant="tenant-a") == 2
    assert value(found, "ltm_tenant_users", tenant="other") == 1


def test_metrics_are_refused_to_other_networks_unless_the_token_is_sent(
    client, settings
):
    outside = {"REMOTE_ADDR": "203.0.113.7"}
    refused = client.get("/metrics", **outside)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"

    settings.LTM_METRICS_TOKEN = "scrape-secret"
    assert (
        client.get("/metrics", **outside, HTTP_AUTHORIZATION="Bearer wrong").status_code
        == 403
    )
    assert (
        client.get(
            "/metrics", **outside, HTTP_AUTHORIZATION="Bearer scrape-secret"
        ).status_code
        == 200
    )


def test_metrics_can_be_turned_off(client, settings):
    settings.LTM_METRICS_ENABLED = False

    response = client.get("/metrics")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.slow
def test_under_gunicorn_every_workers_requests_are_in_any_scrape(tmp_path):
    with fresh_database(tmp_path) as database:
        env = service_env(
            tmp_path, database, PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus")
        )
        create_tenant(env)
        with gunicorn(env, workers=2) as base:
            for _ in range(40):
                urllib.request.urlopen(f"{base}/healthz", timeout=10).read()  # noqa: S310
            scrapes = [
                samples(
                    urllib.request.urlopen(f"{base}/metrics", timeout=10)  # noqa: S310
                    .read()
                    .decode()
                )
                for _ in range(4)
            ]
    probes = {"endpoint": "healthz", "method": "GET", "status": "200"}
    # Whichever worker answered, it counted both workers' requests.
    assert {value(found, "ltm_http_requests_total", **probes) for found in scrapes} == {
        40.0
    }
