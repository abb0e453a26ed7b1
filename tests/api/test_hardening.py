"""What a public port and hostile input do to the API: limits, leaks, refusals.

The real `secretaries serve` process for connection limits and logs; TestClient on the real
databases for input that no store can hold (nothing may be written, nothing may become 500).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tests.conftest import snapshot
from tests.servers import free_port

TOKEN = "hardening-token-0123"


def _serve(tmp_path: Path, **env: str) -> tuple[subprocess.Popen[str], str, Path]:
    port = free_port()
    log = tmp_path / "serve.log"
    full = {k: v for k, v in os.environ.items() if not k.startswith("SECRETARIES_")}
    full.update(
        SECRETARIES_HOME=str(tmp_path / "home"),
        SECRETARIES_API_TOKEN=TOKEN,
        **env,
    )
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "secretaries_cli", "serve", "--port", str(port)],
            env=full,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=2).close()
            return proc, base, log
        except urllib.error.HTTPError:
            return proc, base, log
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(log.read_text())


def _get(url: str, token: str | None = None) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_two_thousand_half_open_connections_leave_healthz_fast(tmp_path: Path) -> None:
    proc, base, log = _serve(
        tmp_path, SECRETARIES_API_MAX_CONNECTIONS="500", SECRETARIES_API_HEADER_TIMEOUT="3"
    )
    port = int(base.rsplit(":", 1)[1])
    sockets: list[socket.socket] = []
    try:
        for _ in range(2000):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
            sockets.append(sock)
        started = time.monotonic()
        status, body = _get(f"{base}/healthz")
        took = time.monotonic() - started
        assert status == 200 and body == {"database": "ok", "contexts": "ok"}
        assert took < 1.0, took
        time.sleep(3.5)  # past the header timeout: the half-open ones are gone
        started = time.monotonic()
        assert _get(f"{base}/healthz")[0] == 200
        assert time.monotonic() - started < 1.0
    finally:
        for sock in sockets:
            sock.close()
        proc.terminate()
        proc.wait(30)
    text = log.read_text()
    assert "Too many open files" not in text
    assert "Traceback" not in text


def test_tokens_in_query_strings_never_reach_the_access_log(tmp_path: Path) -> None:
    proc, base, log = _serve(tmp_path)
    try:
        code, _ = _get(f"{base}/api/secretaries/?token={TOKEN}")
        assert code == 401
        assert _get(f"{base}/api/secretaries/?token=other-secret-value")[0] == 401
    finally:
        proc.terminate()
        proc.wait(30)
    text = log.read_text()
    assert "GET /api/secretaries/ HTTP/1.1" in text  # the line is there, without the query
    assert TOKEN not in text and "other-secret-value" not in text


def test_healthz_without_the_token_names_no_backend(tmp_path: Path) -> None:
    dead = free_port()
    url = f"postgresql+psycopg://dbuser:pw@127.0.0.1:{dead}/appdb"
    from fastapi.testclient import TestClient as Client

    from secretaries_api import create_app
    from secretaries_api.services import Services
    from secretaries_core.catalog.registry import SecretaryRegistry
    from secretaries_core.config import Settings
    from secretaries_core.context import SqlContextStore
    from secretaries_core.orchestrator import Orchestrator
    from secretaries_core.plumbing.db import make_engine

    engine = make_engine(url)
    settings = Settings.load(env={"SECRETARIES_HOME": str(tmp_path)})
    registry = SecretaryRegistry(engine)
    store = SqlContextStore(engine, settings.context_policy)
    services = Services(settings, registry, store, Orchestrator(registry, store, settings))
    with Client(create_app(services, api_token=TOKEN)) as client:
        anonymous = client.get("/healthz")
        assert anonymous.status_code == 503
        assert anonymous.json() == {"database": "unavailable", "contexts": "unavailable"}
        for hidden in ("dbuser", "appdb", str(dead), "127.0.0.1"):
            assert hidden not in anonymous.text
        operator = client.get("/healthz", headers={"Authorization": f"Bearer {TOKEN}"})
        assert operator.status_code == 503 and "cannot reach" in operator.text
        assert "pw" not in operator.json()["database"].split("@")[0].split(":")[-1]
    services.orchestrator.close()
    engine.dispose()


DEEP: dict[str, object] = {}
_level = DEEP
for _ in range(300):
    _level["x"] = {}
    _level = _level["x"]  # type: ignore[assignment]


@pytest.mark.parametrize(
    "body",
    [
        {"name": "s1", "model": "echo", "prompt": "p", "params": {"k": "a\ud800b"}},
        {"name": "s2", "model": "echo", "prompt": "p", "params": {"k": "a\x00b"}},
        {"name": "s3", "model": "echo", "prompt": "p", "params": {"a\ud800": 1}},
        {"name": "s4", "model": "echo", "prompt": "p", "params": {"deep": DEEP}},
        {"name": "s5", "model": "echo", "prompt": "p\ud800"},
        {"name": "s6", "model": "echo", "prompt": "p", "description": "d\ud800"},
        {"name": "s7", "model": "a\U0001f600b", "prompt": "p"},
        {"name": "s8", "model": "a\ud800b", "prompt": "p"},
    ],
)
def test_unstorable_secretaries_are_422_and_nothing_is_written(
    client: TestClient, engine: Engine, body: dict[str, object]
) -> None:
    before = snapshot(engine)
    raw = json.dumps(body)  # \ud800 travels as a JSON escape, as a hostile client sends it
    answer = client.post(
        "/api/secretaries/", content=raw, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 422, answer.text
    assert snapshot(engine) == before
    assert client.get("/api/secretaries/").status_code == 200


def test_nested_params_on_update_are_refused(seeded: TestClient, engine: Engine) -> None:
    before = snapshot(engine)
    answer = seeded.patch("/api/secretaries/alice", json={"params": {"deep": DEEP}})
    assert answer.status_code in (422, 405), answer.text
    assert snapshot(engine) == before


@pytest.mark.parametrize(
    "path",
    [
        "/api/users/?secretary=a%00b",
        "/api/users/?secretary=%ff%fe",
        "/api/usage?secretary=a%00",
        "/api/usage?user=%00",
        "/api/contexts/stats?x=%00",
    ],
)
def test_nul_in_query_parameters_is_422(seeded: TestClient, path: str) -> None:
    answer = seeded.get(path)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "InvalidInput" or "error" in answer.json()


def test_a_body_that_trickles_is_408(tmp_path: Path) -> None:
    proc, base, _log = _serve(tmp_path, SECRETARIES_API_BODY_TIMEOUT="1")
    port = int(base.rsplit(":", 1)[1])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"POST /api/secretaries/ HTTP/1.1\r\nHost: x\r\n"
                + f"Authorization: Bearer {TOKEN}\r\n".encode()
                + b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
            )
            answer = sock.recv(4096).decode()
        assert answer.startswith("HTTP/1.1 408"), answer
    finally:
        proc.terminate()
        proc.wait(30)


def test_openapi_declares_bearer_auth_on_protected_routes_only(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert any(s.get("scheme") == "bearer" for s in schemes.values())
    paths = doc["paths"]
    assert paths["/api/secretaries/"]["get"].get("security")
    assert not paths["/healthz"]["get"].get("security")
    assert not paths["/metrics"]["get"].get("security")


def test_updates_on_a_server_without_a_queue_are_503_not_a_client_error(
    seeded: TestClient, engine: Engine
) -> None:
    before = snapshot(engine)
    response = seeded.post("/api/updates", json={"update_id": 1, "telegram_id": 5, "text": "hello"})
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert "no queue" in error["message"] and "SECRETARIES_QUEUE_URL" in error["message"]
    assert snapshot(engine) == before
