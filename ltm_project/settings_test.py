"""Settings for the test suite: the real settings with test-only defaults."""

import os
import tempfile

os.environ.setdefault("LTM_SECRET_KEY", "test-only-secret-key")  # noqa: S105
os.environ.setdefault("LTM_DATA_DIR", tempfile.mkdtemp(prefix="ltm-test-"))
# WhiteNoise warns about a missing static root; tests serve no static files.
os.environ.setdefault("LTM_STATIC_ROOT", tempfile.mkdtemp(prefix="ltm-static-"))
os.environ.setdefault("LTM_ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
# The test client and live servers speak plain HTTP, with no TLS proxy in front.
os.environ.setdefault("LTM_SSL_REDIRECT", "false")

from ltm_project.settings import *  # noqa: E402, F403

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not memory: threads of a live server then each open their own
    # connection, as server processes do, and forgotten words can be looked for
    # in its bytes (WAL included).
    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": os.path.join(os.environ["LTM_DATA_DIR"], "test-database.sqlite3")
    }
