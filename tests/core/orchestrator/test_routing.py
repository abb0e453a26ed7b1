"""Routing through the orchestrator: registration, switching, fallback, updates, failures."""

from __future__ import annotations

import pytest

from secretaries_core.catalog.models import AssistantUpdate
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.context import ContextStore
from secretaries_core.context.redis_store import RedisContextStore
from secretaries_core.errors import ModelError, NoDefaultSecretary
from tests.core.orchestrator.conftest import MakeOrchestrator, add
from tests.llm_server import llm_server


def test_first_message_registers_the_user(
    registry: SecretaryRegistry, make_orchestrator: MakeOrchestrator
) -> None:
    add(registry, "alice", default=True)
    orch = make_orchestrator()
    reply = orch.handle(500, "hello", username="newbie")
    assert (reply.text, reply.secretary, reply.source) == (
        "[alice] hello (context: 0 messages)",
        "alice",
        "default",
    )
    assert registry.get_user("@newbie").telegram_id == 500
    assert orch.handle(500, "again").text == "[alice] again (context: 2 messages)"


def test_switching_uses_the_new_secretary_and_its_own_context(
    registry: SecretaryRegistry, store: ContextStore, make_orchestrator: MakeOrchestrator
) -> None:
    add(registry, "alice", default=True)
    add(registry, "bob")
    orch = make_orchestrator()
    orch.handle(1, "a1")
    orch.handle(1, "a2")
    registry.assign(1, "bob")  # same process: takes effect on the very next message
    reply = orch.handle(1, "b1")
    assert (reply.secretary, reply.source) == ("bob", "assigned")
    assert reply.text == "[bob] b1 (context: 0 messages)"
    registry.assign(1, "alice")
    back = orch.handle(1, "a3")
    assert back.text == "[alice] a3 (context: 4 messages)"
    alice, bob = registry.get_secretary("alice").id, registry.get_secretary("bob").id
    assert [m.content for m in store.read(1, alice) if m.role == "user"] == ["a1", "a2", "a3"]
    assert [m.content for m in store.read(1, bob) if m.role == "user"] == ["b1"]


def test_deactivation_falls_back_to_the_default(
    registry: SecretaryRegistry, make_orchestrator: MakeOrchestrator
) -> None:
    add(registry, "alice", default=True)
    add(registry, "bob")
    orch = make_orchestrator()
    registry.add_user(2)
    registry.assign(2, "bob")
    assert orch.handle(2, "x").secretary == "bob"
    registry.deactivate("bob")
    reply = orch.handle(2, "y")
    assert (reply.secretary, reply.source) == ("alice", "fallback")
    registry.activate("bob")
    assert orch.handle(2, "z").text == "[bob] z (context: 2 messages)"


def test_other_process_changes_show_within_the_staleness_bound(
    registry: SecretaryRegistry, make_orchestrator: MakeOrchestrator, db_url: str
) -> None:
    from secretaries_core.plumbing.db import make_engine

    add(registry, "alice", default=True)
    add(registry, "bob")
    now = [100.0]
    orch = make_orchestrator(clock=lambda: now[0], resolution_ttl_seconds=5)
    assert orch.handle(3, "one").secretary == "alice"
    other = SecretaryRegistry(make_engine(db_url))  # no notifications reach `orch`
    other.assign(3, "bob")
    now[0] += 4.9  # within the staleness bound: still the cached answer
    assert orch.handle(3, "cached").secretary == "alice"
    now[0] += 0.2  # past it: resolved again
    assert orch.handle(3, "fresh").secretary == "bob"
    other.engine.dispose()


def test_prompt_update_reaches_the_next_message(
    registry: SecretaryRegistry, make_orchestrator: MakeOrchestrator
) -> None:
    with llm_server() as (url, script):
        add(registry, "alice", model="openai/test-model", default=True, temperature=0.1)
        orch = make_orchestrator(openai_base_url=url)
        assert orch.handle(4, "hi").text == "<You are alice.> re: hi (0 earlier)"
        registry.update_secretary(
            "alice", AssistantUpdate(prompt="You are Alicia.", params={"temperature": 0.7})
        )
        assert orch.handle(4, "hi again").text == "<You are Alicia.> re: hi again (2 earlier)"
        assert script.requests[1]["temperature"] == 0.7
        assert orch.pool.metrics.pool_evictions.labels(reason="version")._value.get() == 1


def test_model_failure_stores_nothing(
    registry: SecretaryRegistry, store: ContextStore, make_orchestrator: MakeOrchestrator
) -> None:
    with llm_server() as (url, script):
        add(registry, "alice", model="openai/test-model", default=True)
        orch = make_orchestrator(openai_base_url=url)
        orch.handle(5, "works")
        script.default = "500"
        with pytest.raises(ModelError):
            orch.handle(5, "fails")
        alice = registry.get_secretary("alice").id
        kept = store.read(5, alice)
        assert [m.content for m in kept] == ["works", "<You are alice.> re: works (0 earlier)"]
        text = orch.metrics_text().decode()
        assert 'secretaries_errors_total{type="ModelUnavailable"} 1.0' in text


def test_no_secretary_available(
    registry: SecretaryRegistry, make_orchestrator: MakeOrchestrator
) -> None:
    orch = make_orchestrator()
    with pytest.raises(NoDefaultSecretary):
        orch.handle(6, "anyone?")


def test_per_user_mode_and_metrics(
    registry: SecretaryRegistry, make_orchestrator: MakeOrchestrator
) -> None:
    add(registry, "alice", default=True)
    add(registry, "bob", instance_mode="per-user")
    orch = make_orchestrator()
    for user in (10, 11, 12):
        orch.handle(user, "hi")
    assert len(orch.pool) == 1  # alice is shared
    for user in (10, 11, 12):
        registry.assign(user, "bob")
        orch.handle(user, "hi bob")
    assert len(orch.pool) == 4  # + one bob per user
    text = orch.metrics_text().decode()
    assert 'secretaries_messages_total{secretary="bob"} 3.0' in text
    assert 'secretaries_resolutions_total{source="assigned"} 3.0' in text
    assert "secretaries_model_latency_seconds_bucket" in text
    assert "secretaries_pool_size 4.0" in text


def test_reads_answered_from_memory_are_scraped(
    registry: SecretaryRegistry, store: ContextStore, make_orchestrator: MakeOrchestrator
) -> None:
    add(registry, "alice", default=True)
    orch = make_orchestrator()
    for n in range(4):
        assert orch.handle(20, f"message {n}").text.endswith(f"(context: {2 * n} messages)")
    text = orch.metrics_text().decode()
    # On Redis the first read asks Redis, the next three come from the tracked lane.
    expected = 3.0 if isinstance(store, RedisContextStore) else 0.0
    assert f"secretaries_context_reads_remembered {expected}" in text
