"""Every log line of a request carries its id, the client's X-Request-ID or a
new one, echoed in the response; LTM_LOG_FORMAT=json writes one object a line."""

import json
import re
import urllib.error
import urllib.request

import pytest

from tests.servers import create_tenant, fresh_database, gunicorn, service_env

pytestmark = pytest.mark.django_db


def test_the_response_echoes_a_sane_request_id_or_makes_one(client):
    given = client.get("/healthz", HTTP_X_REQUEST_ID="trace-42.a_b")
    assert given["X-Request-ID"] == "trace-42.a_b"

    # One that could forge a log line is replaced.
    forged = client.get("/healthz", HTTP_X_REQUEST_ID="x\n[forged] line")
    assert re.fullmatch(r"[0-9a-f]{32}", forged["X-Request-ID"])
    assert forged["X-Request-ID"] != client.get("/healthz")["X-Request-ID"]


def _get(url: str, request_id: str) -> int:
    request = urllib.request.Request(url, headers={"X-Request-ID": request_id})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.slow
@pytest.mark.parametrize("log_format", ["json", "text"])
def test_a_servers_log_lines_carry_the_request_id(tmp_path, log_format):
    log_path = tmp_path / "server.log"
    with fresh_database(tmp_path) as database:
        env = service_env(tmp_path, database, LTM_LOG_FORMAT=log_format)
        create_tenant(env)
        with gunicorn(env, workers=1, log_path=log_path) as base:
            # Django logs a 404 as a warning, inside the request.
            assert _get(f"{base}/no-such-page", "probe-7f3a") == 404
    lines = log_path.read_text().splitlines()
    if log_format == "json":
        entries = [json.loads(line) for line in lines if line.startswith("{")]
        not_found = [e for e in entries if "Not Found: /no-such-page" in e["message"]]
        assert not_found, lines
        assert not_found[0]["requestId"] == "probe-7f3a"
        assert not_found[0]["level"] == "WARNING"
        assert not_found[0]["logger"] == "django.request"
    else:
        assert any("[probe-7f3a] Not Found: /no-such-page" in line for line in lines), (
            lines
        )
