"""/healthz and /readyz answer orchestrators' probes: no token, any host name,
plain HTTP, and JSON in the error shape when something is not ready."""

import pytest
from django.test import override_settings

from memories.vectorstores import use_vector_store
from memories.vectorstores.s3vectors import S3VectorsStore
from tests.fakes.s3vectors import fake_s3vectors

pytestmark = pytest.mark.django_db

READY_CHECKS = {"database", "cache", "vectorStore", "embeddingModel"}


def test_healthz_answers_a_probe_addressed_by_ip_without_a_token(client):
    response = client.get("/healthz", HTTP_HOST="10.1.2.3:8000")

    assert response.status_code == 200
    assert response.json() == {"status": "alive"}
    assert response["Cache-Control"] == "no-store"


def test_readyz_checks_every_part_the_service_needs(client):
    response = client.get("/readyz", HTTP_HOST="10.1.2.3")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == READY_CHECKS
    assert all(check["ok"] for check in body["checks"].values())


def test_readyz_is_503_in_the_error_shape_when_the_cache_is_unreachable(client):
    # A Redis cache on a port nothing listens on.
    unreachable = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:9/0",
            "OPTIONS": {"socket_connect_timeout": 1},
        }
    }
    with override_settings(CACHES=unreachable):
        response = client.get("/readyz")

    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "not_ready"
    assert error["message"] == "Not ready: cache."
    checks = error["details"]["checks"]
    assert checks["cache"]["ok"] is False
    assert checks["database"]["ok"] is True
    # Only the exception's class: no host names or addresses in a public answer.
    assert "127.0.0.1" not in response.content.decode()


def test_readyz_is_503_when_the_vector_store_cannot_answer(client, settings):
    with fake_s3vectors():
        # The stand-in answers, but the bucket was never made.
        use_vector_store(
            S3VectorsStore(
                bucket="no-such-bucket",
                dimension=384,
                model_name="test-model",
                region="us-east-1",
                max_attempts=1,
            )
        )
        response = client.get("/readyz")

    assert response.status_code == 503
    error = response.json()["error"]
    assert error["message"] == "Not ready: vectorStore."
    assert error["details"]["checks"]["vectorStore"] == {
        "ok": False,
        "error": "VectorStoreError",
        "ms": error["details"]["checks"]["vectorStore"]["ms"],
    }


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_refuse_other_methods_in_json(client, path):
    response = client.post(path)

    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert response.json()["error"]["code"] == "method_not_allowed"
