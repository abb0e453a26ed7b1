"""The webhook's front door (`WebhookFront`, outside the API's middleware) keeps the API's
limits and error shape: a real `serve` process, a real Redis queue, the Bot API double.

Secret first (401 before any body is read), then the size limit (413, from the header or
as a chunked body passes it), the body deadline (408), JSON (422), and the answer: 200
with `duplicate` telling a repeat, the entry queued once. Every other request, the same
path with another method included, still goes through the API's own stack.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.api.test_hardening import _serve
from tests.telegram.bot_api import TOKEN as BOT_TOKEN
from tests.telegram.bot_api import bot_api

pytestmark = pytest.mark.redis
SECRET = "front-door-secret_1"
HOOK = "/telegram/webhook"


@pytest.fixture
def server(tmp_path: Path, redis_url: str) -> Iterator[tuple[int, redis.Redis, str]]:
    prefix = f"wf{uuid.uuid4().hex[:6]}:"
    with bot_api() as (api_url, _api):
        proc, base, log = _serve(
            tmp_path,
            SECRETARIES_QUEUE_URL=redis_url,
            SECRETARIES_REDIS_PREFIX=prefix,
            SECRETARIES_TELEGRAM_TOKEN=BOT_TOKEN,
            SECRETARIES_TELEGRAM_API_URL=api_url,
            SECRETARIES_TELEGRAM_WEBHOOK_SECRET=SECRET,
            SECRETARIES_API_MAX_BODY="2000",
            SECRETARIES_API_BODY_TIMEOUT="1",
        )
        client = redis.Redis.from_url(redis_url)
        try:
            yield int(base.rsplit(":", 1)[1]), client, prefix
        finally:
            proc.terminate()
            proc.wait(30)
            client.close()
        assert "Traceback" not in log.read_text()


def _exchange(port: int, raw: bytes, *, wait_s: float = 60) -> tuple[int, dict[str, Any]]:
    """Send `raw` on a fresh connection; (status, JSON body) of the answer (waits long:
    a machine with both cores busy is slow, not wrong)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as sock:
        sock.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body) if body else {}


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def _request(body: bytes, *, secret: str | None = SECRET, method: str = "POST") -> bytes:
    head = f"{method} {HOOK} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    if secret is not None:
        head += f"X-Telegram-Bot-Api-Secret-Token: {secret}\r\n"
    return head.encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body


def _text_update(update_id: int, text: str) -> bytes:
    user = {"id": 4242, "is_bot": False, "first_name": "A"}
    message = {
        "message_id": update_id,
        "date": 0,
        "chat": {"id": 4242, "type": "private"},
        "from": user,
        "text": text,
    }
    return json.dumps({"update_id": update_id, "message": message}).encode()


def _queued(client: redis.Redis, prefix: str) -> list[bytes]:
    texts = []
    for key in client.scan_iter(f"{prefix}*in*"):
        if client.type(key) == b"stream":
            texts += [fields[b"text"] for _id, fields in client.xrange(key)]
    return texts


def test_the_front_door_keeps_the_limits_and_queues_once(
    server: tuple[int, redis.Redis, str],
) -> None:
    port, client, prefix = server
    update = _text_update(7001, "book the room")

    # Without the secret: 401 before the body, which never comes.
    head_only = _request(update, secret="wrong")[: -len(update)]
    assert _exchange(port, head_only)[0] == 401
    assert _exchange(port, _request(update, secret=None))[0] == 401

    # Over the size limit: at once from Content-Length, or as a chunked body passes it.
    big = _request(b"x" * 3000)[:-3000]
    status, body = _exchange(port, big)
    assert (status, body["error"]["code"]) == (413, "PayloadTooLarge")
    chunked = (
        f"POST {HOOK} HTTP/1.1\r\nHost: x\r\nX-Telegram-Bot-Api-Secret-Token: {SECRET}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode() + b"".join(b"%x\r\n%s\r\n" % (500, b"y" * 500) for _ in range(5))
    assert _exchange(port, chunked)[0] == 413

    # A body that trickles: 408 after SECRETARIES_API_BODY_TIMEOUT (1 s).
    status, body = _exchange(port, _request(update)[:-10])
    assert (status, body["error"]["code"]) == (408, "RequestTimeout")

    # Not JSON: 422 in the API's error shape.
    status, body = _exchange(port, _request(b"{not json"))
    assert status == 422 and body["error"]["message"] == "the body is not JSON"

    assert _queued(client, prefix) == []  # none of the refused bodies reached the queue

    # Taken once; Telegram's resend of it is a 200 that says so.
    assert _exchange(port, _request(update)) == (200, {"ok": True, "duplicate": False})
    assert _exchange(port, _request(update)) == (200, {"ok": True, "duplicate": True})
    assert _queued(client, prefix) == [b"book the room"]

    # Another method on the same path is the API's, not the front door's.
    assert _exchange(port, _request(b"", method="GET"))[0] == 405


def test_a_server_that_takes_the_webhook_builds_its_ingress_at_start_up(
    tmp_path: Path, redis_url: str
) -> None:
    # Telegram waits a few seconds for an answer: the first update must not pay for
    # importing the Telegram front. A server without the secret builds nothing.
    from fastapi.testclient import TestClient

    from secretaries_api.app import create_app
    from secretaries_core.config import Settings
    from secretaries_core.plumbing import schema
    from secretaries_core.plumbing.db import make_engine

    db_url = f"sqlite:///{tmp_path / 'w.db'}"
    engine = make_engine(db_url)
    schema.upgrade(engine)
    engine.dispose()
    env = {
        "SECRETARIES_HOME": str(tmp_path),
        "SECRETARIES_DATABASE_URL": db_url,
        "SECRETARIES_QUEUE_URL": redis_url,
        "SECRETARIES_REDIS_PREFIX": f"wf{uuid.uuid4().hex[:6]}:",
        "SECRETARIES_TELEGRAM_TOKEN": BOT_TOKEN,
    }
    for secret, built in ((None, False), (SECRET, True)):
        if secret is not None:
            env["SECRETARIES_TELEGRAM_WEBHOOK_SECRET"] = secret
        app = create_app(settings=Settings.load(env=env), api_token=None)
        with TestClient(app):
            assert (app.state.services._webhook is not None) is built
