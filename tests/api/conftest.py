"""API fixtures: the app on a real database (SQLite / PostgreSQL) through TestClient."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from secretaries_api import create_app
from secretaries_api.services import Services
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.config import Settings
from secretaries_core.context import SqlContextStore
from secretaries_core.orchestrator import Orchestrator

TOKEN = "test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def services(engine: Engine) -> Iterator[Services]:
    settings = replace(Settings.load(env={}), resolution_ttl_seconds=0)
    registry = SecretaryRegistry(engine)
    store = SqlContextStore(engine, settings.context_policy)
    svc = Services(settings, registry, store, Orchestrator(registry, store, settings))
    yield svc
    svc.orchestrator.close()


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services, api_token=TOKEN), headers=AUTH) as test_client:
        yield test_client


@pytest.fixture
def seeded(client: TestClient) -> TestClient:
    for name, default in (("alice", True), ("bob", False)):
        response = client.post(
            "/api/secretaries/",
            json={
                "name": name,
                "model": "echo",
                "prompt": f"You are {name}.",
                "is_default": default,
                "params": {"temperature": 0.3},
            },
        )
        assert response.status_code == 201, response.text
    for tid, username in ((1, "ann"), (2, None)):
        assert (
            client.post("/api/users/", json={"telegram_id": tid, "username": username}).status_code
            == 201
        )
    return client
