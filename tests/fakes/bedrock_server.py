"""Bedrock's Converse and ConverseStream on loopback, for the real boto3 client.

Point a client at it with an endpoint URL. Converse answers JSON; ConverseStream
answers in AWS's event-stream encoding (application/vnd.amazon.eventstream),
which botocore decodes as it does Bedrock's own: messageStart, one
contentBlockDelta a word, contentBlockStop, messageStop, metadata (the usage).
Answers come from `responder(body)`: text, or a dict for a call of the forced
tool the request names. `fail_next(code, status)` answers the next request with
that error; `fail_stream_after` ends the next streams with a throttling
exception event after that many events.
"""

from __future__ import annotations

import json
import re
import struct
import threading
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

USAGE = {"inputTokens": 42, "outputTokens": 7, "totalTokens": 49}


def event_message(headers: dict[str, str], payload: dict) -> bytes:
    """One message of AWS's event-stream encoding: a prelude (total and header
    lengths, their CRC32), string headers, the payload, the CRC32 of it all."""
    encoded = b""
    for name, value in headers.items():
        name_bytes, value_bytes = name.encode(), value.encode()
        encoded += struct.pack(">B", len(name_bytes)) + name_bytes
        encoded += struct.pack(">BH", 7, len(value_bytes)) + value_bytes
    body = json.dumps(payload).encode()
    total = 12 + len(encoded) + len(body) + 4
    prelude = struct.pack(">II", total, len(encoded))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + encoded + body
    return message + struct.pack(">I", zlib.crc32(message))


def event(name: str, payload: dict) -> bytes:
    return event_message(
        {
            ":event-type": name,
            ":content-type": "application/json",
            ":message-type": "event",
        },
        payload,
    )


def exception_event(name: str, message: str) -> bytes:
    return event_message(
        {
            ":exception-type": name,
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        {"message": message},
    )


@dataclass
class BedrockRequest:
    operation: str  # converse or converse-stream
    model_id: str
    body: dict


@dataclass
class FakeBedrock:
    responder: Callable[[dict], str | dict] = lambda body: "OK"
    requests: list[BedrockRequest] = field(default_factory=list)
    failures: deque = field(default_factory=deque)
    fail_stream_after: int | None = None

    def __post_init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
        )

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> FakeBedrock:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail_next(self, code: str, status: int) -> None:
        self.failures.append((code, status))

    def _answer(self, body: dict) -> tuple[list[dict], str]:
        """The answer's content blocks and stop reason."""
        answer = self.responder(body)
        if isinstance(answer, dict):
            tool = body["toolConfig"]["tools"][0]["toolSpec"]["name"]
            block = {"toolUse": {"toolUseId": "t1", "name": tool, "input": answer}}
            return [block], "tool_use"
        return [{"text": answer}], "end_turn"

    def converse(self, body: dict) -> dict:
        content, stop_reason = self._answer(body)
        return {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop_reason,
            "usage": USAGE,
            "metrics": {"latencyMs": 1},
        }

    def converse_stream(self, body: dict) -> list[bytes]:
        content, stop_reason = self._answer(body)
        words = re.findall(r"\S+\s*", content[0]["text"])
        events = [event("messageStart", {"role": "assistant"})]
        events += [
            event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": w}})
            for w in words
        ]
        events += [
            event("contentBlockStop", {"contentBlockIndex": 0}),
            event("messageStop", {"stopReason": stop_reason}),
            event("metadata", {"usage": USAGE, "metrics": {"latencyMs": 1}}),
        ]
        if self.fail_stream_after is not None:
            events = events[: self.fail_stream_after]
            events.append(exception_event("throttlingException", "Slow down."))
        return events

    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the name http.server calls
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                _, _, model_id, operation = self.path.split("/", 3)
                fake.requests.append(BedrockRequest(operation, unquote(model_id), body))
                if fake.failures:
                    code, status = fake.failures.popleft()
                    self._send(
                        status,
                        "application/json",
                        json.dumps({"message": f"scripted {code}"}).encode(),
                        {"x-amzn-ErrorType": code},
                    )
                elif operation == "converse-stream":
                    self._send(
                        200,
                        "application/vnd.amazon.eventstream",
                        b"".join(fake.converse_stream(body)),
                    )
                else:
                    answer = json.dumps(fake.converse(body)).encode()
                    self._send(200, "application/json", answer)

            def _send(self, status, content_type, payload, headers=None):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        return Handler
