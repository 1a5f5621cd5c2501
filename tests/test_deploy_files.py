"""The Dockerfile and compose.yaml: what they run is what the tests run, and
compose.yaml is valid where docker compose is installed (images cannot be
pulled here, so nothing is built)."""

import os
import re
import shutil
import subprocess

import pytest
import yaml

from tests.servers import ROOT

COMPOSE = ROOT / "compose.yaml"


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run(
            [docker, "compose", "version"], capture_output=True, check=False
        ).returncode
        == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_the_image_runs_gunicorn_as_a_user_other_than_root():
    dockerfile = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.MULTILINE)
    assert users, "no USER: the container would run as root"
    assert users[-1] not in ("root", "0")
    assert "collectstatic --no-input" in dockerfile
    assert '"gunicorn", "ltm_project.wsgi"' in dockerfile


def test_compose_runs_web_worker_postgres_and_redis_with_known_settings():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert set(services) == {"web", "worker", "postgres", "redis"}
    assert "gunicorn ltm_project.wsgi" in services["web"]["command"]
    assert services["worker"]["command"].startswith("celery -A ltm_project worker")
    settings_source = (ROOT / "ltm_project" / "settings.py").read_text()
    for name in services["web"]["environment"]:
        if name.startswith("LTM_"):
            assert f'"{name}"' in settings_source, f"{name} is not a setting"


def test_compose_file_is_valid_for_docker_compose():
    command = _compose_command()
    if command is None:
        pytest.skip("docker compose is not installed here")
    env = {**os.environ, "LTM_SECRET_KEY": "compose-check-only"}
    checked = subprocess.run(
        [*command, "-f", str(COMPOSE), "config", "--services"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    assert set(checked.stdout.split()) == {"web", "worker", "postgres", "redis"}
    # Without a secret key it refuses, naming it.
    env.pop("LTM_SECRET_KEY")
    refused = subprocess.run(
        [*command, "-f", str(COMPOSE), "config"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert refused.returncode != 0
    assert "LTM_SECRET_KEY" in refused.stderr
