"""`manage.py check --deploy` on the production defaults."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def deploy_check(tmp_path, **extra) -> subprocess.CompletedProcess:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("LTM_") and key != "DJANGO_SETTINGS_MODULE"
    }
    env.update(
        DJANGO_SETTINGS_MODULE="ltm_project.settings",
        LTM_DEBUG="false",
        LTM_SECRET_KEY=secrets.token_urlsafe(50),
        LTM_ALLOWED_HOSTS="ltm.example.com",
        LTM_DATA_DIR=str(tmp_path),
        **extra,
    )
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_defaults_redirect_to_https_and_send_hsts(tmp_path):
    result = deploy_check(tmp_path)
    report = result.stdout + result.stderr
    for fixed in ("W004", "W008", "W012", "W016", "W009"):
        assert fixed not in report
    # What is left depends on the deployer's domain.
    assert "W005" in report
    assert "W021" in report


def test_with_the_domain_choices_made_nothing_is_left(tmp_path):
    result = deploy_check(
        tmp_path, LTM_HSTS_INCLUDE_SUBDOMAINS="true", LTM_HSTS_PRELOAD="true"
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_behind_a_tls_proxy_only_plain_http_is_redirected(client_a, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31536000
    unknown = "/api/v1/memories/00000000-0000-0000-0000-000000000000"
    plain = client_a.get(unknown)
    assert plain.status_code == 301
    assert plain["Location"].startswith("https://")
    proxied = client_a.get(unknown, HTTP_X_FORWARDED_PROTO="https")
    assert proxied.status_code == 404
    assert proxied["Strict-Transport-Security"] == "max-age=31536000"
