"""Every endpoint and every error status, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from secretaries_api import create_app
from secretaries_api.services import Services
from tests.api.conftest import AUTH
from tests.conftest import snapshot


def error(response, status: int, code: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    if code:
        assert body["error"]["code"] == code
    return body["error"]


def test_seed_endpoints(seeded: TestClient) -> None:
    rows = seeded.get("/api/secretaries/").json()
    assert [r["name"] for r in rows] == ["alice", "bob"]
    assert set(rows[0]) >= {
        "id",
        "name",
        "description",
        "model",
        "params",
        "is_active",
        "is_default",
        "version",
        "users",
    }
    current = seeded.get("/api/users/1/secretary").json()
    assert current["source"] == "default" and current["secretary"]["name"] == "alice"
    assert current["user"] == {"telegram_id": 1, "username": "ann"}
    bob_id = rows[1]["id"]
    assigned = seeded.post(f"/api/users/1/secretary/{bob_id}").json()
    assert assigned["changed"] and assigned["secretary"] == "bob"
    assert seeded.post("/api/users/@ann/secretary/bob").json()["changed"] is False
    assert seeded.get("/api/users/@ann/secretary").json()["source"] == "assigned"


def test_catalog_endpoints(seeded: TestClient) -> None:
    detail = seeded.get("/api/secretaries/bob").json()
    assert detail["prompt"] == "You are bob." and "created_at" in detail
    updated = seeded.patch("/api/secretaries/bob", json={"prompt": "New.", "description": "d"})
    assert updated.json()["version"] == 2 and updated.json()["description"] == "d"
    assert seeded.post("/api/secretaries/bob/default").json()["is_default"] is True
    assert seeded.post("/api/secretaries/alice/deactivate").json()["is_active"] is False
    assert [r["name"] for r in seeded.get("/api/secretaries/").json()] == ["bob"]
    assert len(seeded.get("/api/secretaries/", params={"all": "true"}).json()) == 2
    assert seeded.post("/api/secretaries/alice/activate").json()["is_active"] is True
    seeded.post("/api/users/2/secretary/alice")
    moved = seeded.post("/api/secretaries/alice/deactivate", params={"reassign_to": "bob"})
    assert moved.status_code == 200
    assert seeded.get("/api/users/2/secretary").json()["secretary"]["name"] == "bob"


def test_users_history_migration(seeded: TestClient) -> None:
    again = seeded.post("/api/users/", json={"telegram_id": 1})
    assert again.status_code == 200 and again.json()["status"] == "unchanged"
    users = seeded.get("/api/users/").json()
    assert [(u["telegram_id"], u["secretary"]) for u in users] == [(1, None), (2, None)]
    dry = seeded.post("/api/migrate-users", json={"dry_run": True}).json()
    assert dry == {"secretary": "alice", "migrated": 2, "dry_run": True}
    assert seeded.post("/api/migrate-users", json={}).json()["migrated"] == 2
    moved = seeded.post("/api/migrate-users", json={"from": "alice", "to": "bob", "batch_size": 1})
    assert moved.json() == {"secretary": "bob", "migrated": 2, "dry_run": False}
    assert [
        u["telegram_id"] for u in seeded.get("/api/users/", params={"secretary": "bob"}).json()
    ] == [1, 2]
    history = seeded.get("/api/users/1/history").json()
    assert [(h["secretary"], h["is_active"]) for h in history] == [("bob", True), ("alice", False)]


def test_messages_and_contexts(seeded: TestClient) -> None:
    reply = seeded.post("/api/messages", json={"user_id": 1, "text": "hello"}).json()
    assert reply == {
        "reply": "[alice] hello (context: 0 messages)",
        "secretary": "alice",
        "source": "default",
    }
    seeded.post("/api/messages", json={"user_id": 3, "text": "new user", "username": "cid"})
    assert seeded.get("/api/users/@cid/secretary").status_code == 200
    stats = seeded.get("/api/contexts/stats").json()
    assert stats == {
        "contexts": 2,
        "messages": 4,
        "by_secretary": {"alice": {"contexts": 2, "messages": 4}},
    }
    shown = seeded.get("/api/users/1/contexts").json()
    assert shown["contexts"][0]["messages"][0]["content"] == "hello"
    assert seeded.get("/api/users/1/contexts", params={"secretary": "bob"}).json()["contexts"] == []
    assert seeded.post("/api/contexts/purge", json={"user": "1", "dry_run": True}).json() == {
        "purged": 1,
        "dry_run": True,
    }
    assert seeded.post("/api/contexts/purge", json={"secretary": "alice"}).json()["purged"] == 2
    assert seeded.post("/api/contexts/purge", json={"older_than": "7d"}).json()["purged"] == 0


def test_health_metrics_openapi(seeded: TestClient) -> None:
    bare = TestClient(seeded.app)
    assert bare.get("/healthz").json() == {"database": "ok", "contexts": "ok"}
    seeded.post("/api/messages", json={"user_id": 1, "text": "hi"})
    metrics = bare.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    assert 'secretaries_messages_total{secretary="alice"} 1.0' in metrics.text
    spec = bare.get("/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/api/secretaries/",
        "/api/users/{user_id}/secretary",
        "/api/users/{user_id}/secretary/{secretary_id}",
        "/api/messages",
        "/healthz",
    ):
        assert path in paths
    assert "ErrorOut" in spec["components"]["schemas"]


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dGVzdA=="}]
)
def test_auth_required(seeded: TestClient, headers: dict[str, str]) -> None:
    bare = TestClient(seeded.app, headers=headers)
    for method, path in (
        ("get", "/api/secretaries/"),
        ("post", "/api/users/1/secretary/bob"),
        ("post", "/api/messages"),
    ):
        err = error(getattr(bare, method)(path), 401, "Unauthorized")
        assert "token" in err["message"]


def test_error_statuses_change_nothing(seeded: TestClient, engine: Engine) -> None:
    before = snapshot(engine)
    error(seeded.get("/api/users/99/secretary"), 404, "UnknownUser")
    error(seeded.post("/api/users/1/secretary/carol"), 404, "UnknownSecretary")
    error(seeded.get("/api/secretaries/carol"), 404, "UnknownSecretary")
    error(seeded.post("/api/secretaries/alice/deactivate"), 409, "Conflict")
    error(
        seeded.post("/api/secretaries/", json={"name": "alice", "model": "echo", "prompt": "x"}),
        409,
        "Conflict",
    )
    error(
        seeded.post("/api/secretaries/", json={"name": "x", "model": "foo/bar", "prompt": "x"}),
        422,
        "InvalidInput",
    )
    error(seeded.post("/api/secretaries/", json={"name": "x"}), 422, "InvalidInput")
    error(
        seeded.post("/api/secretaries/", json={"name": "n\x00", "model": "echo", "prompt": "p"}),
        422,
        "InvalidInput",
    )
    error(seeded.patch("/api/secretaries/bob", json={"description": "d\x00"}), 422)
    error(seeded.get("/api/users/abc/secretary"), 422, "InvalidInput")
    error(seeded.get("/api/users/99999999999999999999/secretary"), 422)
    error(seeded.post("/api/users/", json={"telegram_id": 0}), 422)
    error(seeded.post("/api/users/", json={"telegram_id": 5, "username": "bad name"}), 422)
    error(seeded.post("/api/contexts/purge", json={"older_than": "soon"}), 422)
    error(seeded.post("/api/messages", json={"user_id": 1, "text": ""}), 422)
    error(seeded.post("/api/messages", json={"user_id": 1, "text": "a\x00b"}), 422)
    error(seeded.post("/api/migrate-users", json={"from": "bob", "to": "bob"}), 409)
    error(seeded.get("/nowhere"), 404, "NotFound")
    error(seeded.get("/api/secretaries/%0A"), 404, "NotFound")  # not the list route
    assert snapshot(engine) == before
    seeded.post("/api/secretaries/bob/deactivate")
    before = snapshot(engine)
    error(seeded.post("/api/users/1/secretary/bob"), 409, "InactiveSecretary")
    assert snapshot(engine) == before


def test_no_default_is_409(client: TestClient) -> None:
    client.post("/api/users/", json={"telegram_id": 1})
    error(client.get("/api/users/1/secretary"), 409, "NoDefaultSecretary")
    error(client.post("/api/messages", json={"user_id": 1, "text": "hi"}), 409)


def test_unreachable_context_store_is_503(services: Services) -> None:
    from secretaries_core.context import open_context_store
    from tests.servers import free_port

    services.contexts = open_context_store(
        f"redis://:pw@127.0.0.1:{free_port()}/0", policy=services.settings.context_policy
    )
    with TestClient(create_app(services, api_token=None)) as open_client:
        err = error(open_client.get("/api/contexts/stats"), 503, "BackendUnavailable")
        assert "***" in err["message"] and ":pw@" not in err["message"]
        health = open_client.get("/healthz")
        assert health.status_code == 503 and health.json()["database"] == "ok"


def test_no_auth_mode(services: Services) -> None:
    with TestClient(create_app(services, api_token=None)) as open_client:
        assert open_client.get("/api/secretaries/").status_code == 200


def test_auth_header_constant(seeded: TestClient) -> None:
    assert seeded.get("/api/secretaries/", headers=AUTH).status_code == 200


def test_usage_limits_and_the_quota_status(seeded: TestClient) -> None:
    for text in ("one", "two"):
        assert seeded.post("/api/messages", json={"user_id": 1, "text": text}).status_code == 200
    doc = seeded.get("/api/usage").json()
    assert {"messages", "prompt_tokens", "completion_tokens", "by_secretary"} <= set(doc)
    assert doc["messages"] == 2 and set(doc["by_secretary"]) == {"alice"}
    assert seeded.get("/api/usage", params={"user": "@ann", "since": "1d"}).json()["messages"] == 2
    assert seeded.get("/api/usage", params={"secretary": "bob"}).json()["messages"] == 0
    error(seeded.get("/api/usage", params={"since": "later"}), 422, "InvalidInput")
    error(seeded.get("/api/usage", params={"user": "404404"}), 404, "UnknownUser")
    limits = seeded.put("/api/users/1/limits", json={"messages_per_day": 2})
    assert limits.json() == {"telegram_id": 1, "messages_per_day": 2, "tokens_per_day": None}
    error(seeded.put("/api/users/1/limits", json={"messages_per_day": -1}), 422)
    refused = seeded.post("/api/messages", json={"user_id": 1, "text": "three"})
    body = error(refused, 429, "QuotaExceeded")
    assert "resets at" in body["message"]
    assert 0 < int(refused.headers["Retry-After"]) <= 86400
    streamed = seeded.post("/api/messages?stream=true", json={"user_id": 1, "text": "four"})
    error(streamed, 429, "QuotaExceeded")
    assert seeded.get("/api/usage").json()["messages"] == 2


def test_control_characters_are_refused_over_rest(seeded: TestClient) -> None:
    body = {"name": "eve", "model": "echo", "prompt": "p", "description": "x\x1b]0;pwned\x07"}
    error(seeded.post("/api/secretaries/", json=body), 422, "InvalidInput")
    body = {"name": "eve\x1b[2J", "model": "echo", "prompt": "p"}
    error(seeded.post("/api/secretaries/", json=body), 422, "InvalidInput")
    assert [s["name"] for s in seeded.get("/api/secretaries/").json()] == ["alice", "bob"]
