"""A real HTTP server on loopback that speaks the OpenAI chat-completions and the Anthropic messages wire
formats with scripted answers: valid, invalid JSON, schema-violating, slow, 401/429/500 errors.

The judge's LLM code talks to it through the real ``openai`` and ``anthropic`` SDKs.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


@dataclass
class Reply:
    """One scripted answer: a text (status 200) or an HTTP error, after an optional delay."""

    content: str | None = None
    status: int = 200
    delay: float = 0.0
    message: str = "scripted error"
    usage: tuple[int, int] = (1200, 300)
    headers: dict[str, str] = field(default_factory=dict)


class FakeLLMServer:
    """Serve ``POST /v1/chat/completions`` (OpenAI) and ``POST /v1/messages`` (Anthropic).

    Replies are taken per model from :meth:`script` queues; when a model's queue is empty,
    ``fallback(request_body, api)`` answers (default: a 500). Every request is recorded.
    """

    def __init__(self, *, api_key: str = "test-key") -> None:
        self.api_key = api_key
        self.queues: dict[str, deque[Reply]] = defaultdict(deque)
        self.fallback: Callable[[dict[str, Any], str], Reply] | None = None
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    body = {}
                api = "anthropic" if self.path.rstrip("/").endswith("/messages") else "openai"
                headers = {k.lower(): v for k, v in self.headers.items()}
                with server._lock:
                    server.requests.append({"path": self.path, "api": api, "headers": headers, "body": body})
                if not self.path.startswith("/v1/"):
                    return self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                key = (headers.get("authorization") or "").removeprefix("Bearer ").strip()
                if api == "anthropic" and headers.get("x-api-key"):
                    key = headers["x-api-key"]  # older SDKs send x-api-key, newer ones a bearer token
                if key != server.api_key:
                    return self._error(api, Reply(status=401, message="invalid x-api-key" if api == "anthropic"
                                                  else "Incorrect API key provided"))
                reply = server._next(body, api)
                if reply.delay:
                    deadline = time.monotonic() + reply.delay
                    while time.monotonic() < deadline and not server._stopping.is_set():
                        time.sleep(0.01)
                if reply.status != 200:
                    return self._error(api, reply)
                model = body.get("model", "?")
                if api == "anthropic":
                    payload = {"id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                               "content": [{"type": "text", "text": reply.content or ""}], "stop_reason": "end_turn",
                               "stop_sequence": None,
                               "usage": {"input_tokens": reply.usage[0], "output_tokens": reply.usage[1]}}
                else:
                    payload = {"id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": model,
                               "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": reply.content or ""}}],
                               "usage": {"prompt_tokens": reply.usage[0], "completion_tokens": reply.usage[1],
                                         "total_tokens": sum(reply.usage)}}
                self._send(200, payload, reply.headers)

            def _error(self, api: str, reply: Reply) -> None:
                headers = {"retry-after-ms": "5", **reply.headers}
                if api == "anthropic":
                    kind = {401: "authentication_error", 429: "rate_limit_error", 404: "not_found_error"}.get(
                        reply.status, "api_error")
                    payload = {"type": "error", "error": {"type": kind, "message": reply.message}}
                else:
                    payload = {"error": {"message": reply.message, "type": "error", "code": str(reply.status)}}
                self._send(reply.status, payload, headers)

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    # ------------------------------------------------------------------ control
    def start(self) -> "FakeLLMServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "FakeLLMServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL for the Anthropic SDK (``/v1/messages`` is appended by it)."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def openai_url(self) -> str:
        """Base URL for the OpenAI SDK (``/chat/completions`` is appended by it)."""
        return self.url + "/v1"

    def script(self, model: str, *replies: Reply | str) -> None:
        """Queue replies for ``model`` (a string is a 200 answer with that text)."""
        with self._lock:
            for reply in replies:
                self.queues[model].append(reply if isinstance(reply, Reply) else Reply(content=reply))

    def reset(self) -> None:
        with self._lock:
            self.queues.clear()
            self.requests.clear()
            self.fallback = None

    def requests_for(self, model: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if r["body"].get("model") == model]

    def _next(self, body: dict[str, Any], api: str) -> Reply:
        model = body.get("model", "?")
        with self._lock:
            queue = self.queues.get(model)
            if queue:
                return queue.popleft()
        if self.fallback is not None:
            return self.fallback(body, api)
        return Reply(status=500, message=f"nothing scripted for model {model!r}")


def last_user_text(body: dict[str, Any]) -> str:
    """The text of the last user message of a request (either format)."""
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return "".join(part.get("text", "") for part in content if isinstance(part, dict))
            return str(content)
    return ""
