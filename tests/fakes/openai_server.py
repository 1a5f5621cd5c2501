"""A local HTTP server that speaks the parts of OpenAI's API the service uses.

The real `openai` client is pointed at it through its base URL, so requests cross
the same HTTP layer (serialisation, headers, retries) as in production.

Embeddings are computed from the text. Chat answers come, in this order, from a
scripted failure (`fail_next`, `fail_always`), a refusal of the way structured
output was asked for (`refuse_mode`, as servers that do not take it answer), the
queue of scripted answers (`reply_with`, `reply_with_json`, `refuse_next`),
`chat_responder`, or "OK". Asked for a tool call, the fake answers with one
whose arguments are the answer.
A chat request with `"stream": true` gets its answer as OpenAI streams it:
server-sent events of chat.completion.chunk objects, a word each, then
`data: [DONE]`; `fail_stream_after` ends the next streams with an error event
after that many chunks, as OpenAI reports a failure once a stream has begun.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
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
    # The fake's own time answering it: from its body read to its last byte sent.
    seconds: float = 0.0


@dataclass
class ScriptedResponse:
    status: int
    body: dict
    headers: dict[str, str] = field(default_factory=dict)
    # Sent as server-sent events instead of `body`, when set.
    events: list[dict] | None = None


@dataclass
class ChatAnswer:
    """One scripted chat answer: text, or a refusal (content None)."""

    content: str | None
    refusal: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def _words(text: str | None) -> int:
    return len(text.split()) if text else 0


def _message_text(content) -> str:
    """A request message's text, whether a string or a list of content parts."""
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content)
    return content or ""


def structured_mode(body: dict) -> str | None:
    """How a chat request asks for JSON: json_schema, json_object, tool, prompt
    (a schema in the system prompt), or None."""
    kind = (body.get("response_format") or {}).get("type")
    if kind in ("json_schema", "json_object"):
        return kind
    if body.get("tools"):
        return "tool"
    if requested_schema(body) is not None:
        return "prompt"
    return None


def requested_schema(body: dict) -> dict | None:
    """The JSON schema a chat request asks its answer to follow, however asked."""
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        return response_format["json_schema"]["schema"]
    if response_format.get("schema"):
        return response_format["schema"]
    for tool in body.get("tools") or []:
        return tool["function"]["parameters"]
    for message in body.get("messages", []):
        text = _message_text(message.get("content"))
        if message["role"] == "system" and "JSON schema" in text:
            return json.loads(text.rsplit("\n", 1)[1])
    return None


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
        self.chat_script: deque[ChatAnswer] = deque()
        # Answers every unscripted chat request from its JSON body.
        self.chat_responder: Callable[[dict], str] | None = None
        # Like some OpenAI-compatible servers: chat answers without "usage".
        self.omit_usage = False
        # Streams end with an error event after this many chunks, when set.
        self.fail_stream_after: int | None = None
        # A pause before each event of a stream (a model writing slowly).
        self.stream_delay_seconds = 0.0
        # mode -> the answer of a server that does not take that mode.
        self.refused_modes: dict[str, ScriptedResponse] = {}
        # Schema keywords refused as OpenAI's strict mode refuses them.
        self.refused_keywords: set[str] = set()
        self._chat_count = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        # A short poll interval: stop() waits up to one interval for the loop.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
        )

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

    def refuse_mode(self, mode: str, status: int, body: dict) -> None:
        """Answer requests asking for structured output that way with `body`."""
        self.refused_modes[mode] = ScriptedResponse(status, body)

    def refuse_schema_keyword(self, keyword: str) -> None:
        """Refuse any schema using `keyword`, in the words of OpenAI's strict mode."""
        self.refused_keywords.add(keyword)

    def _refused_keyword(self, body: dict) -> ScriptedResponse | None:
        schema = json.dumps(requested_schema(body) or {})
        for keyword in sorted(self.refused_keywords):
            if f'"{keyword}"' in schema:
                message = (
                    "Invalid schema for response_format 'answer': In context=(), "
                    f"'{keyword}' is not permitted."
                )
                error = {"message": message, "type": "invalid_request_error"}
                return ScriptedResponse(400, {"error": error})
        return None

    def reply_with(
        self,
        content: str,
        *,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
    ) -> None:
        """Queue one chat answer; token counts default to word counts."""
        self.chat_script.append(
            ChatAnswer(
                content,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
            )
        )

    def reply_with_json(self, obj) -> None:
        self.reply_with(json.dumps(obj))

    def refuse_next(self, text: str) -> None:
        self.chat_script.append(ChatAnswer(None, refusal=text))

    def embedding_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/embeddings")]

    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def respond(self, request: RecordedRequest) -> ScriptedResponse:
        if self.script:
            return self.script.popleft()
        if self.always is not None:
            return self.always
        if request.path.endswith("/embeddings"):
            return ScriptedResponse(200, self._embeddings(request.body))
        if request.path.endswith("/chat/completions"):
            refused = self.refused_modes.get(
                structured_mode(request.body)
            ) or self._refused_keyword(request.body)
            if refused is not None:
                return refused
            answer = self._chat(request.body)
            if request.body.get("stream"):
                return ScriptedResponse(200, {}, events=self._chunks(answer, request))
            return ScriptedResponse(200, answer)
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

    def _chat(self, body: dict) -> dict:
        if self.chat_script:
            answer = self.chat_script.popleft()
        elif self.chat_responder is not None:
            answer = ChatAnswer(self.chat_responder(body))
        else:
            answer = ChatAnswer("OK")
        prompt_tokens = answer.prompt_tokens
        if prompt_tokens is None:
            prompt_tokens = sum(
                _words(_message_text(m.get("content"))) for m in body["messages"]
            )
        completion_tokens = answer.completion_tokens
        if completion_tokens is None:
            completion_tokens = _words(answer.content or answer.refusal)
        self._chat_count += 1
        message = {
            "role": "assistant",
            "content": answer.content,
            "refusal": answer.refusal,
        }
        finish_reason = "stop"
        if body.get("tools") and answer.content is not None:
            tool = body["tools"][0]["function"]["name"]
            call = {"name": tool, "arguments": answer.content}
            message["content"] = None
            message["tool_calls"] = [
                {"id": f"call_{self._chat_count}", "type": "function", "function": call}
            ]
            finish_reason = "tool_calls"
        response = {
            "id": f"chatcmpl-fake{self._chat_count}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        if self.omit_usage:
            del response["usage"]
        return response

    def _chunks(self, answer: dict, request: RecordedRequest) -> list[dict]:
        """A whole answer as OpenAI streams it: the role, a word at a time, the
        finish reason, and the usage when stream_options asks for it."""
        include_usage = (request.body.get("stream_options") or {}).get("include_usage")
        choice = answer["choices"][0]
        words = re.findall(r"\S+\s*", choice["message"]["content"] or "")
        deltas = [{"role": "assistant", "content": ""}]
        deltas += [{"content": word} for word in words]
        chunks = [
            {"index": 0, "delta": delta, "finish_reason": None} for delta in deltas
        ]
        chunks.append(
            {"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}
        )
        head = {
            "id": answer["id"],
            "object": "chat.completion.chunk",
            "created": answer["created"],
            "model": answer["model"],
        }
        events = [
            {**head, "choices": [chunk], **({"usage": None} if include_usage else {})}
            for chunk in chunks
        ]
        if include_usage and "usage" in answer:
            events.append({**head, "choices": [], "usage": answer["usage"]})
        if self.fail_stream_after is not None:
            events = events[: self.fail_stream_after]
            failure = {"message": "scripted stream failure", "type": "server_error"}
            events.append({"error": failure})
        return events

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
                started = time.perf_counter()
                fake.requests.append(request)
                if fake.delay_seconds:
                    time.sleep(fake.delay_seconds)
                response = fake.respond(request)
                try:
                    if response.events is None:
                        self._send_json(response)
                    else:
                        self._send_events(response)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and hung up: nobody to answer
                request.seconds = time.perf_counter() - started

            def _send_json(self, response: ScriptedResponse) -> None:
                payload = json.dumps(response.body).encode()
                self.send_response(response.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def _send_events(self, response: ScriptedResponse) -> None:
                # HTTP/1.0 without a length: the body ends when the connection
                # closes, after the last event.
                self.send_response(response.status)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                for event in response.events:
                    if fake.stream_delay_seconds:
                        time.sleep(fake.stream_delay_seconds)
                    self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                    self.wfile.flush()
                if not any("error" in event for event in response.events):
                    self.wfile.write(b"data: [DONE]\n\n")

            def log_message(self, format, *args):  # noqa: A002 - keep test output clean
                pass

        return Handler
