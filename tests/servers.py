"""The real service in a subprocess: its own data directory and database, a
tenant made with the management commands, gunicorn on a free loopback port."""

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_SCHEMES = ("postgres://", "postgresql://", "pgsql://")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def manage(env: dict, *args: str) -> str:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout


def service_env(data_dir: Path, database_url: str, **extra: str) -> dict:
    """The environment of a production-like service on 127.0.0.1."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "LTM_DATA_DIR": str(data_dir),
        "LTM_SECRET_KEY": "test-only",
        "LTM_ALLOWED_HOSTS": "127.0.0.1",
        "LTM_DEBUG": "false",
        # Plain HTTP on 127.0.0.1: no TLS proxy in front to redirect to.
        "LTM_SSL_REDIRECT": "false",
        "DJANGO_SETTINGS_MODULE": "ltm_project.settings",
        **extra,
    }


def create_tenant(env: dict, slug: str = "acme") -> str:
    """Migrates the service's database, creates a tenant; its first token."""
    manage(env, "migrate", "--verbosity", "0")
    return manage(env, "create_tenant", slug).strip().splitlines()[-1]


@contextmanager
def fresh_database(data_dir: Path):
    """A database URL of the kind this test run uses, empty and the service's
    own: a SQLite file in data_dir, or a new database on the PostgreSQL server
    of DATABASE_URL (dropped afterwards)."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(POSTGRES_SCHEMES):
        yield f"sqlite:///{data_dir / 'ltm.sqlite3'}"
        return
    import environ
    import psycopg

    config = environ.Env.db_url_config(url)
    name = f"ltm_service_{secrets.token_hex(4)}"

    def admin(statement: str) -> None:
        with psycopg.connect(
            host=config.get("HOST") or None,
            port=config.get("PORT") or None,
            user=config.get("USER") or None,
            password=config.get("PASSWORD") or None,
            dbname="postgres",
            autocommit=True,
            connect_timeout=10,
        ) as connection:
            connection.execute(statement)

    admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"{url.rsplit('/', 1)[0]}/{name}"
    finally:
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def gunicorn(env: dict, *, workers: int = 2, log_path: Path | None = None):
    """gunicorn serving the service until the block ends; its base URL once the
    schema answers (the workers have loaded). Its output goes to `log_path`."""
    port = free_port()
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "ltm_project.wsgi",
            "--workers",
            str(workers),
            "--bind",
            f"127.0.0.1:{port}",
            "--timeout",
            "120",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/schema/", timeout=5)  # noqa: S310
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
        if log_path:
            log.close()
