"""Named providers, fallback chains, the circuit breaker and replay, against two model doubles."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from secretaries_core.catalog import admin
from secretaries_core.catalog.models import AssistantCreate, AssistantUpdate
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.config import Settings
from secretaries_core.context import SqlContextStore
from secretaries_core.errors import Conflict, InvalidInput
from secretaries_core.evals.replay import replay
from secretaries_core.orchestrator import Orchestrator
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine
from tests.llm_server import Script, llm_server


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[SecretaryRegistry, Script, Script, Settings]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    schema.upgrade(engine)
    registry = SecretaryRegistry(engine)
    with llm_server() as (primary_url, primary), llm_server() as (backup_url, backup):
        registry.add_provider("primary", primary_url, "PRIMARY_KEY")
        registry.add_provider("backup", backup_url)
        settings = replace(
            Settings.load(env={"SECRETARIES_HOME": str(tmp_path)}),
            model_max_retries=0,
            model_timeout_seconds=6.0,
            resolution_ttl_seconds=0,
            circuit_failures=3,
            circuit_cooldown_seconds=1.5,
        )
        yield registry, primary, backup, settings
    engine.dispose()


def _orchestrator(registry: SecretaryRegistry, settings: Settings) -> Orchestrator:
    return Orchestrator(
        registry, SqlContextStore(registry.engine, settings.context_policy), settings
    )


def _create(registry: SecretaryRegistry) -> None:
    registry.create_secretary(
        AssistantCreate(
            name="alice",
            model="primary/big",
            prompt="You are alice.",
            is_default=True,
            params={"fallback_models": "backup/small"},
        )
    )


@pytest.mark.parametrize("fault", ["500", "429", "hang"])
def test_the_fallback_answers_within_the_deadline(
    two: tuple[SecretaryRegistry, Script, Script, Settings], fault: str
) -> None:
    registry, primary, backup, settings = two
    _create(registry)
    primary.default = fault
    orch = _orchestrator(registry, settings)
    started = time.monotonic()
    reply = orch.handle(1, "hello")
    took = time.monotonic() - started
    assert reply.text == "<You are alice.> re: hello (0 earlier)"
    assert reply.model == "backup/small"
    assert took < settings.model_timeout_seconds, took
    assert backup.requests[-1]["model"] == "small"
    orch.flush_usage()
    report = admin.usage_report(registry)
    assert [d.model for d in report.days] == ["backup/small"]
    scraped = orch.metrics_text().decode()
    assert (
        'secretaries_fallbacks_total{from="primary/big",secretary="alice",to="backup/small"} 1.0'
        in scraped
    )
    orch.close()


def test_the_circuit_opens_skips_the_dead_provider_and_closes_again(
    two: tuple[SecretaryRegistry, Script, Script, Settings],
) -> None:
    registry, primary, _backup, settings = two
    _create(registry)
    primary.default = "hang"
    orch = _orchestrator(registry, settings)
    slow = []
    for i in range(3):  # three failures (each waits its share of the deadline) open it
        started = time.monotonic()
        assert orch.handle(10 + i, "x").model == "backup/small"
        slow.append(time.monotonic() - started)
    assert orch.breaker.is_open("primary")
    asked = len(primary.requests)
    started = time.monotonic()
    assert orch.handle(20, "y").model == "backup/small"
    fast = time.monotonic() - started
    assert len(primary.requests) == asked  # straight to the fallback
    assert fast < min(slow) / 3, (fast, slow)
    print(f"\nthrough the fallback: {min(slow):.2f}s circuit closed, {fast:.3f}s circuit open")
    primary.default = "ok"
    time.sleep(settings.circuit_cooldown_seconds + 0.1)
    assert orch.handle(21, "z").model == "primary/big"  # half-open trial succeeded
    assert not orch.breaker.is_open("primary")
    orch.close()


def test_providers_keep_their_keys_out_and_removal_names_users(
    two: tuple[SecretaryRegistry, Script, Script, Settings],
) -> None:
    registry, _primary, _backup, _settings = two
    _create(registry)
    listed = repr(registry.list_providers())
    assert "PRIMARY_KEY" in listed  # the variable's name, never a value
    with pytest.raises(Conflict, match="alice"):
        registry.remove_provider("backup")  # used as a fallback
    with pytest.raises(InvalidInput, match="unknown model provider"):
        registry.update_secretary("alice", AssistantUpdate(params={"fallback_models": "nope/x"}))
    with pytest.raises(InvalidInput):
        registry.add_provider("openai", "http://127.0.0.1:1/v1")
    with pytest.raises(InvalidInput):
        registry.add_provider("withpw", "http://user:secret@127.0.0.1:1/v1")


def test_replay_asks_the_draft_with_each_conversations_history(
    two: tuple[SecretaryRegistry, Script, Script, Settings],
) -> None:
    registry, _primary, backup, settings = two
    registry.create_secretary(
        AssistantCreate(name="alice", model="primary/big", prompt="You are alice.", is_default=True)
    )
    orch = _orchestrator(registry, settings)
    for user in (1, 2, 3):
        for i in range(user):
            orch.handle(user, f"q{i} of {user}")
    registry.update_secretary(
        "alice", AssistantUpdate(model="backup/small", prompt="You are new."), draft=True
    )
    store = orch.store
    sid = registry.get_secretary("alice").id
    before = {u: store.read(u, sid) for u in (1, 2, 3)}
    version, results = orch.run_sync(replay(orch, "alice", users=5))
    assert version == 2
    assert len(backup.requests) == 3
    sizes = sorted(len(r["messages"]) for r in backup.requests)
    assert sizes == [2, 4, 6]  # system + earlier turns + the question
    by_user = {r.telegram_id: r for r in results}
    assert by_user[3].question == "q2 of 3"
    assert by_user[3].stored_answer == "<You are alice.> re: q2 of 3 (4 earlier)"
    assert by_user[3].answer == "<You are new.> re: q2 of 3 (4 earlier)"
    assert {u: store.read(u, sid) for u in (1, 2, 3)} == before  # nothing stored
    orch.close()


def test_a_named_provider_that_repeats_its_key_leaks_it_nowhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    key = "vendor-key-0123456789-SECRET"
    monkeypatch.setenv("VENDOR_TOKEN_VAR", key)
    engine = make_engine(f"sqlite:///{tmp_path / 'k.db'}")
    schema.upgrade(engine)
    registry = SecretaryRegistry(engine)
    with llm_server(Script(default="keyecho")) as (url, script):
        registry.add_provider("vendor", url, "VENDOR_TOKEN_VAR")
        registry.create_secretary(
            AssistantCreate(name="v", model="vendor/m", prompt="p", is_default=True)
        )
        settings = replace(
            Settings.load(env={"SECRETARIES_HOME": str(tmp_path)}), model_max_retries=0
        )
        orch = _orchestrator(registry, settings)
        with pytest.raises(Exception) as failure:
            orch.handle(1, "hi")
        orch.close()
    assert script.headers and script.headers[-1]["Authorization"] == f"Bearer {key}"
    assert key not in str(failure.value)
    assert key not in caplog.text
    assert key not in repr(registry.list_providers())
    engine.dispose()
