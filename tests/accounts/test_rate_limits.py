"""Rate limits are exact across workers sharing Redis, and tokens cannot be
tried at full speed."""

import os
import threading
import time

import pytest
import requests
from django.test import override_settings
from rest_framework.test import APIClient

from accounts.services import token_issue

UNKNOWN = "/api/v1/memories/00000000-0000-0000-0000-000000000000"
# CI sets it (.ci/run) to the Redis on 127.0.0.1; elsewhere the test is skipped.
REDIS_URL = os.environ.get("LTM_TEST_REDIS_URL", "")


def test_failed_authentications_are_throttled_by_client_address(client_a, settings):
    settings.LTM_AUTH_FAILURE_LIMIT = "5/min"
    guesser = APIClient()
    guesser.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    for _ in range(5):
        assert guesser.get(UNKNOWN).status_code == 401
    # The address now waits, whatever it sends, so a good token and a guessed
    # one cannot be told apart by the answer.
    for client in (guesser, client_a):
        response = client.get(UNKNOWN)
        assert response.status_code == 429
        assert response.json()["error"]["code"] == "rate_limited"
        assert int(response["Retry-After"]) >= 1
    # Another address is not affected.
    assert client_a.get(UNKNOWN, REMOTE_ADDR="10.0.0.9").status_code == 404


def test_successful_authentications_are_not_counted(client_a, settings):
    settings.LTM_AUTH_FAILURE_LIMIT = "2/min"
    for _ in range(5):
        assert client_a.get(UNKNOWN).status_code == 404


@pytest.mark.skipif(not REDIS_URL, reason="set LTM_TEST_REDIS_URL to a Redis")
@pytest.mark.django_db(transaction=True)
def test_a_burst_against_a_shared_redis_cache_gets_exactly_the_limit(
    live_server, tenant_a
):
    redis_cache = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": f"test-{os.getpid()}",
        }
    }
    with override_settings(CACHES=redis_cache, LTM_RATE_LIMIT="30/min"):
        from django.core.cache import cache

        cache.clear()
        secret = token_issue(tenant=tenant_a).secret
        statuses: list[int] = []
        lock = threading.Lock()

        def send() -> None:
            with requests.Session() as session:
                for _ in range(8):
                    status = session.get(
                        f"{live_server.url}{UNKNOWN}",
                        headers={"Authorization": f"Bearer {secret}"},
                        timeout=30,
                    ).status_code
                    with lock:
                        statuses.append(status)

        # The burst (a second or two) falls inside one minute's window.
        if time.time() % 60 > 50:
            time.sleep(61 - time.time() % 60)
        threads = [threading.Thread(target=send) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        cache.clear()
    assert len(statuses) == 64
    assert statuses.count(404) == 30, statuses
    assert statuses.count(429) == 34
