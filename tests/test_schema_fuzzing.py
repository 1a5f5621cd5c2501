"""Schema fuzzing: schemathesis against the running service's own OpenAPI schema.

It generates requests from /api/schema/ (valid ones, invalid ones, sequences
such as create-read-delete-read) with a real token and runs every check: no
server error, every status, header and body as the schema states, valid data
accepted, invalid data refused, a deleted memory gone. The schema must describe
what the server does.
"""

import subprocess
import sys
import time

import pytest

from tests.servers import ROOT, create_tenant, fresh_database, gunicorn, service_env

CONFIG = ROOT / "tests" / "schemathesis.toml"
SEED = 1
# Cases per operation and phase: about 1,200 requests in all, under a minute of
# fuzzing on 2 cores.
MAX_EXAMPLES = 50


@pytest.mark.slow
def test_the_service_does_what_its_schema_says(tmp_path):
    with fresh_database(tmp_path) as database_url:
        env = service_env(
            tmp_path,
            database_url,
            # Thousands of requests a minute, and on purpose many without a
            # valid token: no limit may turn them into 429s.
            LTM_RATE_LIMIT="",
            LTM_AUTH_FAILURE_LIMIT="",
        )
        token = create_tenant(env)
        with gunicorn(env) as base:
            started = time.monotonic()
            run = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "schemathesis.cli",
                    "--config-file",
                    str(CONFIG),
                    "run",
                    f"{base}/api/schema/",
                    "--checks",
                    "all",
                    "--seed",
                    str(SEED),
                    "--max-examples",
                    str(MAX_EXAMPLES),
                    "--header",
                    f"Authorization: Bearer {token}",
                    "--no-color",
                ],
                # Whatever it writes stays in the test's directory, not the
                # repository's.
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=600,
            )
            seconds = time.monotonic() - started
    output = run.stdout + run.stderr
    assert run.returncode == 0, f"schemathesis failed ({seconds:.0f} s):\n{output}"
    assert "No issues found" in output, output
    # Its figures (operations, cases, time), shown with pytest -rP.
    print(output[output.index("SUMMARY") :])
