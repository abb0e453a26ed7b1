"""The message path's catalog (`ServingCatalog`, Core alone) on SQLite and PostgreSQL.

A one-shot `chat`, `eval` or `replay` runs the orchestrator on it instead of the registry;
these check that it answers what the registry answers — the registry is a
`ServingCatalog`, so both run the same code — and that an orchestrator on it answers,
counts and rolls back without the ORM being asked for anything.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import Engine

from secretaries_core.catalog.models import AssistantCreate, AssistantUpdate
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.catalog.serving import ServingCatalog
from secretaries_core.config import Settings
from secretaries_core.context.sql import SqlContextStore
from secretaries_core.errors import NoDefaultSecretary, UnknownSecretary, UnknownUser
from secretaries_core.orchestrator import Orchestrator
from secretaries_core.plumbing.metrics import Metrics


def _catalog(registry: SecretaryRegistry) -> None:
    registry.create_secretary(
        AssistantCreate(name="alice", model="echo", prompt="A", is_default=True)
    )
    registry.create_secretary(AssistantCreate(name="carol", model="echo", prompt="C"))
    registry.update_secretary("carol", AssistantUpdate(prompt="C2"), draft=True)
    for telegram_id in range(1, 41):
        registry.add_user(telegram_id)
    registry.assign(7, "carol")
    registry.pin(8, "alice", 1)
    registry.rollout_start("carol", percent=50)


def test_it_resolves_and_serves_what_the_registry_does(
    registry: SecretaryRegistry, engine: Engine
) -> None:
    _catalog(registry)
    serving = ServingCatalog(engine)
    for telegram_id in range(1, 41):
        found, served = serving.resolve_served(telegram_id)
        theirs, _out, their_served = registry.current_version(telegram_id)
        assert (found.secretary.id, found.source) == (theirs.secretary.id, theirs.source)
        assert served == their_served
    found, served = serving.resolve_served(7)
    assert (found.secretary.name, found.source) == ("carol", "assigned")
    assert served.source in ("rollout", "live") and served.rollout is not None
    assert serving.resolve_served(8)[1].source == "pinned"
    with pytest.raises(UnknownUser):
        serving.resolve_served(999)
    assert serving.get_secretary("carol").prompt == "C"
    with pytest.raises(UnknownSecretary):
        serving.get_secretary("nobody")
    assert [v.version for v in serving.versions("carol")] == [
        v.version for v in registry.versions("carol")
    ]


def test_registering_and_rolling_back_tell_the_listeners(
    registry: SecretaryRegistry, engine: Engine
) -> None:
    _catalog(registry)
    serving = ServingCatalog(engine)
    heard: list[tuple[str, object, object]] = []
    serving.subscribe(lambda event, sec, user: heard.append((event, sec, user)))
    serving.add_user(500, "newcomer")
    assert heard == [("user", None, 500)]
    assert registry.get_user("@newcomer").telegram_id == 500
    carol = registry.get_secretary("carol").id
    running = serving.rollout_of(carol, 2)
    assert running is not None and serving.rollout_of(carol, 9) is None
    assert serving.running_rollout(running) is not None
    assert serving.roll_back_rollout(running, "worse")
    assert not serving.roll_back_rollout(running, "again")  # once, whoever calls first
    assert heard[-1] == ("catalog", None, None) and len(heard) == 2
    assert registry.rollout_status("carol")["state"] == "rolled_back"
    assert serving.running_rollout(running) is None


def test_with_no_secretary_it_says_what_to_do(engine: Engine) -> None:
    serving = ServingCatalog(engine)
    serving.add_user(1)
    with pytest.raises(NoDefaultSecretary, match="catalog has no active secretary"):
        serving.resolve_served(1)


def test_an_orchestrator_on_it_answers_and_counts(
    registry: SecretaryRegistry, engine: Engine
) -> None:
    _catalog(registry)
    settings = Settings.load()
    store = SqlContextStore(engine, settings.context_policy)
    orchestrator = Orchestrator(
        ServingCatalog(engine), store, settings, metrics=Metrics(record=False)
    )
    try:
        reply = orchestrator.handle(77, "hello")  # a new user, registered on the way
        assert (reply.secretary, reply.source) == ("alice", "default")
        assert "hello" in reply.text
        assert orchestrator.handle(7, "hi").secretary == "carol"
        assert orchestrator.metrics_text() == b""  # recorded nothing
    finally:
        orchestrator.close()
    assert registry.get_user(77).telegram_id == 77
    counts = registry.version_usage("carol")["carol"]
    assert sum(row["messages"] for row in counts.values()) == 1


def test_a_one_shot_orchestrator_imports_neither_the_orm_nor_the_metrics_client() -> None:
    probe = (
        "import sys\n"
        "from secretaries_core.catalog.serving import ServingCatalog\n"
        "from secretaries_core.orchestrator import Orchestrator\n"
        "from secretaries_core.plumbing.metrics import Metrics\n"
        "Metrics(record=False)\n"
        "heavy = [m for m in ('sqlalchemy.orm', 'sqlmodel', 'pydantic', 'prometheus_client')"
        " if m in sys.modules]\n"
        "print(heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
