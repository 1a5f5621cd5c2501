"""Checks made once before the test run."""

import os

import pytest


def pytest_configure(config):
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://", "pgsql://")):
        return
    import environ
    import psycopg

    settings = environ.Env.db_url_config(url)
    try:
        psycopg.connect(
            host=settings.get("HOST") or None,
            port=settings.get("PORT") or None,
            user=settings.get("USER") or None,
            password=settings.get("PASSWORD") or None,
            dbname="postgres",
            connect_timeout=5,
        ).close()
    except psycopg.OperationalError as exc:
        # Never skip: a CI run meant for PostgreSQL must not pass on nothing.
        pytest.exit(
            f"DATABASE_URL points at PostgreSQL but it is unreachable: {exc}",
            returncode=3,
        )
