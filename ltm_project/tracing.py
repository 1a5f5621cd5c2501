"""OpenTelemetry traces, when OTEL_EXPORTER_OTLP_ENDPOINT is set: Django's
requests, the database, HTTP clients (httpx and httpx2, which the OpenAI client
uses; boto3 for S3 Vectors and Bedrock) and Celery's tasks, beside the
service's own spans around embedding, vector store calls, keyword search and
model calls (memories/observability.py). The exporter reads the standard OTEL_* settings
(OTLP over HTTP/protobuf); OTEL_SERVICE_NAME defaults to "ltm".

Without the endpoint nothing is installed and the service's spans cost a no-op.
"""

import os
import threading

_configured = threading.Lock()
_done = False


def configure_tracing() -> bool:
    """Install the exporter and the instrumentations once a process; whether
    tracing is on."""
    global _done
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return False
    with _configured:
        if _done:
            return True
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter,
        )
        from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
        from opentelemetry.instrumentation.celery import CeleryInstrumentor
        from opentelemetry.instrumentation.django import DjangoInstrumentor
        from opentelemetry.instrumentation.httpx import (
            HTTPX2ClientInstrumentor,
            HTTPXClientInstrumentor,
        )
        from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
        from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider(
            resource=Resource.create(
                {"service.name": os.environ.get("OTEL_SERVICE_NAME", "ltm")}
            )
        )
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
        DjangoInstrumentor().instrument()
        SQLite3Instrumentor().instrument()
        PsycopgInstrumentor().instrument(enable_commenter=False)
        HTTPXClientInstrumentor().instrument()
        # The openai client speaks through httpx2, httpx's successor.
        if HTTPX2ClientInstrumentor._module is not None:
            HTTPX2ClientInstrumentor().instrument()
        BotocoreInstrumentor().instrument()
        CeleryInstrumentor().instrument()
        _done = True
    return True
