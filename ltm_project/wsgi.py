"""WSGI entry point (gunicorn ltm_project.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ltm_project.settings")

from ltm_project.chunked import ChunkedBodies  # noqa: E402

application = ChunkedBodies(get_wsgi_application())

# Load the embedding model and check the vector store before the first request:
# a store built for another model stops the server here, with its reason.
from memories.vectorstores import get_vector_store  # noqa: E402

get_vector_store().verify()
