"""REST parity for versions, rollouts and feedback (the CLI's documents)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from secretaries_api.services import Services
from secretaries_core.catalog.models import AssistantUpdate


def test_versions_rollout_and_feedback_over_rest(seeded: TestClient, services: Services) -> None:
    client = seeded
    services.registry.update_secretary("alice", AssistantUpdate(prompt="new"), draft=True)
    rows = client.get("/api/secretaries/alice/versions").json()
    assert [(r["version"], r["state"]) for r in rows] == [(2, "draft"), (1, "live")]
    assert client.get("/api/secretaries/alice/rollout").status_code == 404
    started = client.post(
        "/api/secretaries/alice/rollout",
        json={"percent": 100, "max_dislike_rate": 0.5, "min_messages": 1},
    )
    assert started.status_code == 200, started.text
    assert started.json()["candidate"]["version"] == 2
    again = client.post("/api/secretaries/alice/rollout", json={"percent": 10})
    assert again.status_code == 409
    bad = client.post("/api/secretaries/alice/rollout/percent", json={"percent": 101})
    assert bad.status_code == 422
    # A queued update answered by the candidate, then disliked by its update id.
    reply = services.orchestrator.run_sync(
        services.orchestrator.ahandle(1, "hello", idempotency_key="77")
    )
    assert (reply.version, reply.version_source) == (2, "rollout")
    current = client.get("/api/users/1/secretary").json()
    assert (current["version"], current["version_source"]) == (2, "rollout")
    voted = client.post("/api/feedback", json={"telegram_id": 1, "update_id": 77, "value": -1})
    assert voted.status_code == 200 and voted.json() == {"recorded": True, "version": 2}
    assert client.get("/api/secretaries/alice/rollout").json()["state"] == "rolled_back"
    for body, code in (
        ({"telegram_id": 1, "update_id": 999, "value": 1}, 404),
        ({"telegram_id": 1, "update_id": 77, "value": 5}, 422),
        ({"telegram_id": 1, "value": 1}, 422),
        ({"telegram_id": 1, "update_id": 77, "message_id": 3, "value": 1}, 422),
    ):
        assert client.post("/api/feedback", json=body).status_code == code, body
