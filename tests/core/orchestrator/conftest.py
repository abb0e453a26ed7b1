"""Orchestrator fixtures: a registry, a context store and settings tuned for tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import Engine

from secretaries_core.catalog.models import AssistantCreate
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.config import Settings
from secretaries_core.context import ContextStore
from secretaries_core.orchestrator import Orchestrator
from tests.context_fixtures import make_store

MakeOrchestrator = Callable[..., Orchestrator]


@pytest.fixture
def settings() -> Settings:
    return replace(Settings.load(env={}), resolution_ttl_seconds=5.0, model_max_retries=1)


@pytest.fixture(params=["database", "redis"])
def store(request: pytest.FixtureRequest, engine: Engine) -> Iterator[ContextStore]:
    if request.param == "database":
        from secretaries_core.context import SqlContextStore

        yield SqlContextStore(engine, Settings.load(env={}).context_policy)
    else:
        handle = make_store(request, "redis", Settings.load(env={}).context_policy)
        yield next(handle).store
        for _ in handle:
            pass


@pytest.fixture
def make_orchestrator(
    registry: SecretaryRegistry, store: ContextStore, settings: Settings
) -> Iterator[MakeOrchestrator]:
    made: list[Orchestrator] = []

    def make(clock: Any = None, **overrides: Any) -> Orchestrator:
        extra = {"clock": clock} if clock is not None else {}
        orchestrator = Orchestrator(registry, store, replace(settings, **overrides), **extra)
        made.append(orchestrator)
        return orchestrator

    yield make
    for orchestrator in made:
        orchestrator.close()


def add(
    registry: SecretaryRegistry,
    name: str,
    *,
    model: str = "echo",
    default: bool = False,
    **params: Any,
) -> None:
    registry.create_secretary(
        AssistantCreate(
            name=name, model=model, prompt=f"You are {name}.", params=params, is_default=default
        )
    )
