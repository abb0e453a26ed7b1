"""PostgreSQL stopped under a running API: every path answers 503 in the JSON error shape."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import text

from secretaries_api import create_app
from secretaries_api.services import Services
from secretaries_core.catalog.models import AssistantCreate
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.config import Settings
from secretaries_core.context import SqlContextStore
from secretaries_core.orchestrator import Orchestrator
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine
from tests.servers import postgres_server

TOKEN = "outage-token"


def _stop_postmaster(engine_url: str) -> None:
    """Fast shutdown of the server behind `engine_url` (SIGINT to its postmaster)."""
    probe = make_engine(engine_url)
    with probe.connect() as conn:
        backend = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        # Read while the backend lives: its parent is the postmaster.
        status = Path(f"/proc/{backend}/status").read_text()
    probe.dispose()
    postmaster = int(
        next(line for line in status.splitlines() if line.startswith("PPid:")).split()[1]
    )
    os.kill(postmaster, signal.SIGINT)
    for _ in range(100):
        if not Path(f"/proc/{postmaster}").exists():
            return
        time.sleep(0.1)


def test_postgres_stopped_gives_503_everywhere() -> None:
    with postgres_server() as url:
        engine = make_engine(url)
        schema.upgrade(engine)
        settings = replace(Settings.load(env={}), resolution_ttl_seconds=0)
        registry = SecretaryRegistry(engine)
        registry.create_secretary(
            AssistantCreate(name="alice", model="echo", prompt="A", is_default=True)
        )
        store = SqlContextStore(engine, settings.context_policy)
        services = Services(settings, registry, store, Orchestrator(registry, store, settings))
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with TestClient(create_app(services, api_token=TOKEN), headers=headers) as client:
            assert (
                client.post("/api/messages", json={"user_id": 1, "text": "hi"}).status_code == 200
            )
            _stop_postmaster(url)
            for method, path, body in [
                ("GET", "/healthz", None),
                ("POST", "/api/messages", {"user_id": 1, "text": "again"}),
                ("POST", "/api/messages?stream=true", {"user_id": 2, "text": "new"}),
                ("GET", "/api/secretaries/", None),
                ("GET", "/api/contexts/stats", None),
                ("GET", "/api/users/1/contexts", None),
                ("GET", "/api/usage", None),
                ("DELETE", "/api/users/1", None),
            ]:
                response = client.request(method, path, json=body)
                assert response.status_code == 503, (path, response.status_code, response.text)
                doc = response.json()
                if path == "/healthz":
                    assert doc["database"] != "ok" and doc["contexts"] != "ok"
                else:
                    assert doc["error"]["code"] == "BackendUnavailable", (path, doc)
        services.orchestrator.close()
        engine.dispose()
