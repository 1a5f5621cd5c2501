"""A local HTTP server that speaks the parts of OpenAI's API the service uses.

The real `openai` client is pointed at it through its base URL, so requests cross
the same HTTP layer (serialisation, headers, retries) as in production.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

_WORD = re.compile(r"[a-z0-9]+")


def fake_embedding(text: str, dimension: int) -> list[float]:
    """A deterministic vector in which texts sharing words are similar."""
    vector = np.zeros(dimension, dtype=np.float64)
    for word in _WORD.findall(text.lower()):
        seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little")
        vector += np.random.default_rng(seed).standard_normal(dimension)
    if not vector.any():
        vector[0] = 1.0
    return (vector / np.linalg.norm(vector)).tolist()


def _encode(vector: list[float], as_base64: bool):
    if not as_base64:
        return vector
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: dict


@dataclass
class ScriptedResponse:
    status: int
    body: dict
    headers: dict[str, str] = field(default_factory=dict)


def _failure(status: int) -> ScriptedResponse:
    return ScriptedResponse(
        status,
        {"error": {"message": f"scripted {status}", "type": "server_error"}},
        # Lets the client retry at once instead of backing off.
        {"retry-after-ms": "1"},
    )


class FakeOpenAI:
    """Records every request; answers from a script first, then by default."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.script: deque[ScriptedResponse] = deque()
        self.always: ScriptedResponse | None = None
        self.reverse_order = False
        self.dimension_override: int | None = None
        self.delay_seconds = 0.0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail_next(self, status: int, *, times: int = 1) -> None:
        for _ in range(times):
            self.script.append(_failure(status))

    def fail_always(self, status: int) -> None:
        self.always = _failure(status)

    def embedding_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/embeddings")]

    def respond(self, request: RecordedRequest) -> ScriptedResponse:
        if self.script:
            return self.script.popleft()
        if self.always is not None:
            return self.always
        if request.path.endswith("/embeddings"):
            return ScriptedResponse(200, self._embeddings(request.body))
        return ScriptedResponse(404, {"error": {"message": "not found"}})

    def _embeddings(self, body: dict) -> dict:
        texts = body["input"]
        texts = [texts] if isinstance(texts, str) else texts
        dimension = self.dimension_override or body.get("dimensions") or 1536
        as_base64 = body.get("encoding_format") == "base64"
        data = [
            {
                "object": "embedding",
                "index": index,
                "embedding": _encode(fake_embedding(text, dimension), as_base64),
            }
            for index, text in enumerate(texts)
        ]
        if self.reverse_order:
            data.reverse()
        tokens = sum(len(text.split()) for text in texts)
        return {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the name http.server calls
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b"{}"
                request = RecordedRequest(
                    method="POST",
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=json.loads(raw or b"{}"),
                )
                fake.requests.append(request)
                if fake.delay_seconds:
                    time.sleep(fake.delay_seconds)
                response = fake.respond(request)
                payload = json.dumps(response.body).encode()
                self.send_response(response.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format, *args):  # noqa: A002 - keep test output clean
                pass

        return Handler
