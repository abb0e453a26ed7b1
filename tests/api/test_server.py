"""The real `secretaries serve` process over HTTP, its refusals, and 8 racing clients."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from secretaries_core.catalog.models import LINK_TABLE, AssistantCreate
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.plumbing.db import make_engine
from tests.servers import free_port

TOKEN = "s3rve-token"


def call(url: str, method: str = "GET", token: str | None = TOKEN) -> tuple[int, object]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def serve(db_url: str, *args: str, token: str | None = TOKEN) -> subprocess.Popen[str]:
    env = {**os.environ, "SECRETARIES_DATABASE_URL": db_url}
    env.pop("SECRETARIES_API_TOKEN", None)
    if token:
        env["SECRETARIES_API_TOKEN"] = token
    return subprocess.Popen(
        [sys.executable, "-m", "secretaries_cli", "serve", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def server(db_url: str) -> Iterator[str]:
    registry = SecretaryRegistry(make_engine(db_url))
    registry.create_secretary(
        AssistantCreate(name="alice", model="echo", prompt="A", is_default=True)
    )
    for i in range(8):
        registry.create_secretary(AssistantCreate(name=f"s{i}", model="echo", prompt="p"))
    registry.add_user(42, "racer")
    registry.engine.dispose()
    port = free_port()
    proc = serve(db_url, "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if call(f"{base}/healthz", token=None)[0] == 200:
                break
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    else:
        proc.kill()
        raise AssertionError(f"serve did not come up: {proc.communicate()}")
    yield base
    proc.terminate()
    _, err = proc.communicate(timeout=30)
    assert TOKEN not in err  # the token never reaches the log


def test_real_server_over_http(server: str) -> None:
    status, body = call(f"{server}/api/secretaries/")
    assert status == 200 and body[0]["name"] == "alice"  # type: ignore[index]
    assert call(f"{server}/api/secretaries/", token=None)[0] == 401
    status, body = call(f"{server}/api/users/42/secretary")
    assert status == 200 and body["source"] == "default"  # type: ignore[index]
    status, body = call(f"{server}/api/users/@racer/secretary/s3", "POST")
    assert status == 200 and body["secretary"] == "s3"  # type: ignore[index]
    assert call(f"{server}/api/users/77/secretary")[0] == 404


def test_eight_clients_assigning_one_user(server: str, db_url: str) -> None:
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def client(i: int) -> None:
        barrier.wait()
        for round_ in range(5):
            statuses.append(call(f"{server}/api/users/42/secretary/s{(i + round_) % 8}", "POST")[0])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(statuses) == {200}
    engine = make_engine(db_url)
    with engine.connect() as conn:
        active = conn.execute(
            select(func.count()).select_from(LINK_TABLE).where(LINK_TABLE.c.is_active)
        ).scalar_one()
    engine.dispose()
    assert active == 1


def test_serve_refuses_without_token(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    proc = serve(url, "--port", str(free_port()), token=None)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and err.startswith("Error: ") and "SECRETARIES_API_TOKEN" in err
    proc = serve(url, "--host", "0.0.0.0", "--no-auth", token=None)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and "loopback" in err
    # A token anyone could guess is refused at start, and never printed.
    proc = serve(url, "--port", str(free_port()), token="abc12")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and "at least 8" in err and "abc12" not in err
    assert not Path(url.removeprefix("sqlite:///")).exists()  # nothing created


def _post_json(url: str, body: dict[str, object]) -> urllib.request.Request:
    request = urllib.request.Request(url, method="POST", data=json.dumps(body).encode())
    request.add_header("Authorization", f"Bearer {TOKEN}")
    request.add_header("Content-Type", "application/json")
    return request


def _events(raw: str) -> list[tuple[str, dict[str, object]]]:
    events = []
    for block in raw.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_streamed_reply_as_server_sent_events(server: str) -> None:
    text = "hello <b>[/x]</b>\nsecond line"
    request = _post_json(f"{server}/api/messages?stream=true", {"user_id": 77, "text": text})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = _events(response.read().decode())
    pieces = [data["text"] for name, data in events if name == "piece"]
    assert len(pieces) > 3 and events[-1][0] == "done"
    done = events[-1][1]
    assert "".join(pieces) == done["reply"] == f"[alice] {text} (context: 0 messages)"  # type: ignore[operator]
    # The stored turn is the streamed text; the next plain call sees it.
    with urllib.request.urlopen(
        _post_json(f"{server}/api/messages", {"user_id": 77, "text": "again"})
    ) as r:
        assert json.load(r)["reply"] == "[alice] again (context: 2 messages)"
    status, contexts = call(f"{server}/api/users/77/contexts")
    stored = [m["content"] for c in contexts["contexts"] for m in c["messages"]]  # type: ignore[index]
    assert status == 200 and stored[:2] == [text, done["reply"]]


def test_a_stream_that_fails_before_its_first_piece_gets_an_http_status(server: str) -> None:
    """Refused before the model speaks: a JSON error with its status, not a 200 stream."""
    request = _post_json(f"{server}/api/messages?stream=true", {"user_id": 78, "text": "a\x00b"})
    with pytest.raises(urllib.error.HTTPError) as failed:
        urllib.request.urlopen(request, timeout=30)
    assert failed.value.code == 422
    body = json.loads(failed.value.read())
    assert body == {
        "error": {"code": "InvalidInput", "message": "the message contains a NUL character"}
    }


def _raw_post(server: str, path: str, headers: dict[str, str], body_size: int) -> int:
    """POST (the start of) a body of `body_size` bytes with a raw socket; the reply status."""
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(server)
    with socket.create_connection((where.hostname, where.port), timeout=30) as sock:
        head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        head += f"Content-Length: {body_size}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        sock.sendall(head.encode())
        # Send only the first chunk: a server that reads the body first would wait here.
        sock.sendall(b"{" + b" " * min(body_size - 1, 65536))
        reply = sock.recv(65536).decode("latin-1")
    return int(reply.split(" ", 2)[1])


def test_unauthenticated_big_bodies_are_refused_before_reading(server: str) -> None:
    started = time.perf_counter()
    assert _raw_post(server, "/api/messages", {}, 50 * 1024 * 1024) == 401
    assert time.perf_counter() - started < 5
    # With the token, a body over the limit is refused from its Content-Length alone.
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert _raw_post(server, "/api/messages", auth, 50 * 1024 * 1024) == 413
    # The token in the query string is never accepted.
    assert call(f"{server}/api/secretaries/?token={TOKEN}", token=None)[0] == 401
    assert call(f"{server}/healthz", token=None)[0] == 200


def test_erase_a_user_over_http(server: str) -> None:
    request = _post_json(f"{server}/api/messages", {"user_id": 4242, "text": "remember me"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
    status, body = call(f"{server}/api/users/4242", method="DELETE")
    assert status == 200
    assert {k: body[k] for k in ("telegram_id", "links", "contexts", "usage_rows")} == {
        "telegram_id": 4242,
        "links": 0,
        "contexts": 1,
        "usage_rows": 1,
    }
    assert call(f"{server}/api/users/4242/secretary")[0] == 404
    assert call(f"{server}/api/users/4242", method="DELETE")[0] == 404
