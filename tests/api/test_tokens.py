"""Scoped API tokens: `secretaries tokens` makes them, the API honours their scope.

The route table (docs/api.md) is walked with a token of each scope: `ingress` reaches only
POST /api/updates, /api/messages and /api/feedback; `read` every GET; `admin` everything;
outside its scope a valid token gets 403 with nothing done, no or a revoked token 401. On
SQLite and PostgreSQL (the tokens live in the database, only as a hash).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from secretaries_api import create_app
from secretaries_api.services import Services
from secretaries_core.catalog.api_tokens import ApiTokens
from tests.api.conftest import TOKEN


def _client(services: Services, token: str, **kwargs: Any) -> TestClient:
    return TestClient(
        create_app(services, api_token=TOKEN, **kwargs),
        headers={"Authorization": f"Bearer {token}"},
    )


ROUTES = [
    # (method, path, body, which scopes may call it)
    ("GET", "/api/secretaries/", None, {"read", "admin"}),
    ("GET", "/api/users/1/secretary", None, {"read", "admin"}),
    ("GET", "/api/contexts/stats", None, {"read", "admin"}),
    ("POST", "/api/messages", {"user_id": 1, "text": "hi"}, {"ingress", "admin"}),
    ("POST", "/api/feedback", {"user_id": 1, "message_id": 1, "score": 1}, {"ingress", "admin"}),
    ("POST", "/api/users/", {"telegram_id": 5}, {"admin"}),
    ("POST", "/api/secretaries/", {"name": "x1", "model": "echo", "prompt": "p"}, {"admin"}),
    ("DELETE", "/api/users/2", None, {"admin"}),
]


def test_each_scope_reaches_only_its_routes(seeded: TestClient, services: Services) -> None:
    tokens = ApiTokens(services.registry.engine)
    made = {scope: tokens.create(f"t-{scope}", scope) for scope in ("read", "ingress", "admin")}
    for method, path, body, allowed in ROUTES:
        for scope, token in made.items():
            with _client(services, token) as client:
                response = client.request(method, path, json=body)
            if scope in allowed:
                assert response.status_code not in (401, 403), (scope, method, path, response.text)
            else:
                assert response.status_code == 403, (scope, method, path, response.text)
                assert response.json()["error"]["code"] == "Forbidden"
    # Refused requests changed nothing: user 5 was made by admin only, user 2 erased by it.
    with _client(services, TOKEN) as admin:
        users = {u["telegram_id"] for u in admin.get("/api/users/").json()}
    assert 5 in users and 2 not in users


def test_ingress_cannot_read_history_or_erase(seeded: TestClient, services: Services) -> None:
    token = ApiTokens(services.registry.engine).create("bot", "ingress")
    with _client(services, token) as client:
        assert client.get("/api/users/1/history").status_code == 403
        assert client.get("/api/contexts/1").status_code == 403
        assert client.delete("/api/users/1").status_code == 403
    with _client(services, TOKEN) as admin:
        assert admin.get("/api/users/1/history").status_code == 200


def test_unknown_and_revoked_tokens_get_401(seeded: TestClient, services: Services) -> None:
    tokens = ApiTokens(services.registry.engine)
    token = tokens.create("soon-gone", "admin")
    with _client(services, token) as client:
        assert client.get("/api/secretaries/").status_code == 200
        tokens.revoke("soon-gone")
        deadline = time.monotonic() + 10
        while client.get("/api/secretaries/").status_code != 401:
            assert time.monotonic() < deadline, "a revoked token kept working"
            time.sleep(0.1)
    with _client(services, "sec_not-a-real-token") as client:
        assert client.get("/api/secretaries/").status_code == 401


def test_metrics_open_unless_required(seeded: TestClient, services: Services) -> None:
    tokens = ApiTokens(services.registry.engine)
    read, ingress = tokens.create("r", "read"), tokens.create("i", "ingress")
    with _client(services, "") as anyone:
        assert anyone.get("/metrics").status_code == 200
    closed = {"auth": True}
    services.settings = __import__("dataclasses").replace(
        services.settings, metrics_token_required=True
    )
    with _client(services, "", **closed) as anyone:
        assert anyone.get("/metrics").status_code == 401
    with _client(services, ingress, **closed) as client:
        assert client.get("/metrics").status_code == 403
    with _client(services, read, **closed) as client:
        assert client.get("/metrics").status_code == 200


def test_only_a_hash_is_stored_and_the_openapi_document_says_so(
    seeded: TestClient, services: Services, engine: Engine
) -> None:
    token = ApiTokens(services.registry.engine).create("h", "read")
    with engine.connect() as conn:
        stored = [tuple(r) for r in conn.execute(text("SELECT * FROM api_token"))]
    assert stored and all(token not in repr(row) for row in stored)
    doc = seeded.get("/openapi.json").json()
    bearer = doc["components"]["securitySchemes"]["HTTPBearer"]["description"]
    assert "ingress" in bearer and "read" in bearer and "403" in bearer


def test_cli_tokens_create_list_revoke(tmp_path: Any) -> None:
    env = {"SECRETARIES_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "secretaries_cli", "tokens", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    made = cli("create", "front", "--scope", "ingress", "--json")
    assert made.returncode == 0, made.stderr
    doc = json.loads(made.stdout)
    assert doc["name"] == "front" and doc["scope"] == "ingress" and doc["token"].startswith("sec_")
    listed = cli("list", "--json")
    assert json.loads(listed.stdout)[0]["name"] == "front"
    assert doc["token"] not in listed.stdout
    assert cli("create", "front", "--scope", "read").returncode == 1
    assert cli("create", "x", "--scope", "root").returncode == 2
    assert cli("revoke", "front").returncode == 0
    gone = cli("revoke", "front")
    assert gone.returncode == 1 and gone.stderr.startswith("Error:")
