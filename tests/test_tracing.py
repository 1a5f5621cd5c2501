"""With OTEL_EXPORTER_OTLP_ENDPOINT set, a request's trace reaches the
collector: Django's span, the database's and the model's HTTP client's, and
the service's own around embedding, vector store calls, keyword search and
model calls, in one trace."""

import json
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.fakes.openai_server import FakeOpenAI
from tests.servers import create_tenant, fresh_database, gunicorn, service_env

pytestmark = pytest.mark.slow


class Collector:
    """An OTLP/HTTP trace receiver that keeps what it is sent."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the handler's protocol
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path == "/v1/traces":
                    collector.requests.append(
                        ExportTraceServiceRequest.FromString(body)
                    )
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def spans(self) -> list[tuple[Span, dict]]:
        found = []
        for request in self.requests:
            for resource in request.resource_spans:
                service = {
                    a.key: a.value.string_value for a in resource.resource.attributes
                }
                for scope in resource.scope_spans:
                    found.extend((span, service) for span in scope.spans)
        return found


def attributes(span: Span) -> dict:
    return {a.key: a.value.string_value or a.value.int_value for a in span.attributes}


def test_a_messages_trace_holds_the_services_spans_and_its_clients(tmp_path):
    collector = Collector()
    model = FakeOpenAI().start()
    model.chat_responder = lambda body: (
        '{"operations": []}' if body.get("response_format") else "Noted."
    )
    try:
        with fresh_database(tmp_path) as database:
            env = service_env(
                tmp_path,
                database,
                OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
                OTEL_BSP_SCHEDULE_DELAY="100",
                LTM_LLM_PROVIDER="openai",
                OPENAI_API_KEY="sk-test-key",
                OPENAI_BASE_URL=model.base_url,
            )
            token = create_tenant(env)
            with gunicorn(env, workers=1) as base:
                request = urllib.request.Request(
                    f"{base}/api/v1/message",
                    data=json.dumps(
                        {"userId": "u1", "message": "I keep bees."}
                    ).encode(),
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Content-Type": "application/json",
                    },
                )
                urllib.request.urlopen(request, timeout=60).read()  # noqa: S310
                deadline = time.monotonic() + 30
                while not any(
                    span.kind == Span.SPAN_KIND_SERVER and "message" in span.name
                    for span, _ in collector.spans()
                ):
                    assert time.monotonic() < deadline, "no server span arrived"
                    time.sleep(0.2)
    finally:
        model.stop()
        collector.server.shutdown()

    spans = collector.spans()
    (server, service) = next(
        (span, service)
        for span, service in spans
        if span.kind == Span.SPAN_KIND_SERVER and "message" in span.name
    )
    assert service["service.name"] == "ltm"
    in_trace = [span for span, _ in spans if span.trace_id == server.trace_id]
    names = {span.name for span in in_trace}
    assert {
        "ltm.embedding",
        "ltm.vector_store.query",
        "ltm.keyword_search",
        "ltm.model_call",
    } <= names, names
    purposes = {
        attributes(span)["purpose"]
        for span in in_trace
        if span.name == "ltm.model_call"
    }
    assert len(purposes) == 2, purposes  # the memory call and the reply
    # The database's statements and the model's HTTP calls, in the same trace.
    assert any(attributes(span).get("db.system") for span in in_trace)
    clients = [span for span in in_trace if span.kind == Span.SPAN_KIND_CLIENT]
    assert any(
        "127.0.0.1" in str(attributes(span).get("url.full") or attributes(span))
        for span in clients
    )
