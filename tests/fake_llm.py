"""A real HTTP server on loopback speaking the chat-completions protocol, scripted by tests."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Script:
    """What the server answers: queued (status, delay) steps, then `default`; and what it saw."""

    steps: list[tuple[int, float]] = field(default_factory=list)
    default: tuple[int, float] = (200, 0.0)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


def _reply(body: dict[str, Any]) -> str:
    """Echo the system prompt and the last user message, so tests can see both."""
    system = body["messages"][0]["content"]
    last = body["messages"][-1]["content"]
    return f"<{system}> re: {last} ({len(body['messages']) - 2} earlier)"


@contextmanager
def fake_llm() -> Iterator[tuple[str, Script]]:
    """Yield (base URL, script) of a running server; stops it afterwards."""
    script = Script()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length))
            with lock:
                script.requests.append(body)
                script.headers.append(dict(self.headers))
                status, delay = script.steps.pop(0) if script.steps else script.default
            if self.path != "/v1/chat/completions":
                status = 404
            time.sleep(delay)
            if status == 200:
                payload = {
                    "id": "x",
                    "object": "chat.completion",
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": _reply(body)}}
                    ],
                }
            else:
                payload = {"error": {"message": f"scripted {status}"}}
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", script
    finally:
        server.shutdown()
        server.server_close()
