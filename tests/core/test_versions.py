"""Versions, rollouts and pins on SQLite and PostgreSQL, through the registry and resolution."""

from __future__ import annotations

from sqlalchemy import Engine, text

from secretaries_core.catalog.models import AssistantCreate, AssistantUpdate
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.errors import Conflict, InvalidInput, NotFound
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine


def _alice(registry: SecretaryRegistry) -> None:
    registry.create_secretary(
        AssistantCreate(name="alice", model="echo", prompt="one", is_default=True)
    )


def test_every_change_is_a_version_and_drafts_wait(registry: SecretaryRegistry) -> None:
    _alice(registry)
    registry.update_secretary("alice", AssistantUpdate(prompt="two"), note="shorter")
    registry.update_secretary("alice", AssistantUpdate(description="no version for this"))
    registry.update_secretary(
        "alice", AssistantUpdate(model="openai/m", params={"temperature": 0.1}), draft=True
    )
    rows = registry.versions("alice")
    assert [(v.version, v.state, v.note) for v in rows] == [
        (3, "draft", None),
        (2, "live", "shorter"),
        (1, "retired", None),
    ]
    assert (rows[0].model, rows[0].params) == ("openai/m", {"temperature": 0.1})
    live = registry.get_secretary("alice")
    assert (live.version, live.model, live.prompt) == (2, "echo", "two")
    doc = registry.diff("alice", 1, 3)
    assert doc["from"] == 1 and doc["to"] == 3
    assert doc["model"] == {"from": "echo", "to": "openai/m"}
    assert doc["params"] == {"temperature": {"from": None, "to": 0.1}}
    assert "-one" in doc["prompt_diff"] and "+two" in doc["prompt_diff"]


def test_rollback_makes_old_content_live_as_a_new_version(registry: SecretaryRegistry) -> None:
    _alice(registry)
    registry.update_secretary("alice", AssistantUpdate(prompt="two"))
    registry.update_secretary("alice", AssistantUpdate(prompt="three"), draft=True)
    registry.rollout_start("alice", percent=50)
    registry.rollback("alice", to=1)
    live = registry.get_secretary("alice")
    assert (live.version, live.prompt) == (4, "one")
    states = {v.version: v.state for v in registry.versions("alice")}
    assert states == {4: "live", 3: "draft", 2: "retired", 1: "retired"}
    assert registry.rollout_status("alice")["state"] == "aborted"
    try:
        registry.rollback("alice", to=9)
    except NotFound as exc:
        assert "no version 9" in str(exc)
    else:
        raise AssertionError("rollback to a missing version")


def test_a_30_percent_rollout_is_stable_and_only_grows(registry: SecretaryRegistry) -> None:
    _alice(registry)
    registry.update_secretary("alice", AssistantUpdate(prompt="candidate"), draft=True)
    users = range(1, 1001)
    for u in users:
        registry.add_user(u)
    registry.rollout_start("alice", percent=30)

    def on_candidate() -> set[int]:
        return {u for u in users if registry.resolve_served(u)[1].source == "rollout"}

    first = on_candidate()
    # Binomial(1000, 0.3): sd 14.5. The bounds are 6 sd wide: a random rollout id makes
    # any tighter bound flaky (±50 failed ~1 run in 750; a busy CI run drew 238).
    assert 210 <= len(first) <= 390, len(first)
    assert on_candidate() == first  # the same users on a second pass
    served = registry.resolve_served(next(iter(first)))[1]
    assert (served.version, served.prompt) == (2, "candidate")
    registry.rollout_set("alice", percent=60)
    wider = on_candidate()
    assert first <= wider and 507 <= len(wider) <= 693, len(wider)
    try:
        registry.rollout_start("alice", percent=10)
    except Conflict:
        pass
    else:
        raise AssertionError("two rollouts at once")
    registry.rollout_promote("alice")
    assert registry.rollout_status("alice")["state"] == "promoted"
    assert registry.get_secretary("alice").version == 2
    assert all(registry.resolve_served(u)[1].source == "live" for u in range(1, 50))


def test_abort_puts_everyone_back_and_keeps_the_draft(registry: SecretaryRegistry) -> None:
    _alice(registry)
    registry.update_secretary("alice", AssistantUpdate(prompt="candidate"), draft=True)
    for u in range(1, 101):
        registry.add_user(u)
    registry.rollout_start("alice", percent=100)
    assert registry.resolve_served(5)[1].source == "rollout"
    registry.rollout_abort("alice")
    assert {registry.resolve_served(u)[1].version for u in range(1, 101)} == {1}
    assert registry.versions("alice")[0].state == "draft"
    assert registry.rollout_status("alice")["state"] == "aborted"


def test_pins_win_over_rollouts_and_later_updates(registry: SecretaryRegistry) -> None:
    _alice(registry)
    registry.add_user(7)
    registry.update_secretary("alice", AssistantUpdate(prompt="two"))
    registry.pin(7, "alice", 1)
    registry.update_secretary("alice", AssistantUpdate(prompt="three"), draft=True)
    registry.rollout_start("alice", percent=100)
    served = registry.resolve_served(7)[1]
    assert (served.version, served.source, served.prompt) == (1, "pinned", "one")
    registry.update_secretary("alice", AssistantUpdate(prompt="four"))
    assert registry.resolve_served(7)[1].version == 1
    assert registry.unpin(7, "alice")
    assert registry.resolve_served(7)[1].source in ("rollout", "live")
    try:
        registry.pin(7, "alice", 42)
    except NotFound:
        pass
    else:
        raise AssertionError("pin to a missing version")


def test_refusals_change_nothing(registry: SecretaryRegistry) -> None:
    _alice(registry)
    for call in (
        lambda: registry.rollout_start("alice", percent=10),  # no draft
        lambda: registry.rollout_start("alice", percent=101, version=1),
        lambda: registry.rollout_start("alice", percent=10, version=1),  # already live
        lambda: registry.rollout_promote("alice"),
    ):
        try:
            call()
        except (InvalidInput, NotFound):
            pass
        else:
            raise AssertionError("accepted")
    assert [v.version for v in registry.versions("alice")] == [1]


def test_the_migration_gives_existing_secretaries_their_version(blank_url: str) -> None:
    engine: Engine = make_engine(blank_url)
    try:
        schema.upgrade(engine, "0004")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO assistant (id, name, description, model, prompt, params, "
                    "is_secretary, is_active, is_default, version, created_at, updated_at) "
                    "VALUES (:id, 'old', '', 'echo', 'kept prompt', '{\"t\": 1}', :yes, :yes, "
                    ":yes, 7, :now, :now)"
                ),
                {
                    "id": "0" * 32,
                    "yes": True,
                    "now": "2026-01-01 00:00:00+00:00",
                },
            )
        schema.upgrade(engine)
        registry = SecretaryRegistry(engine)
        rows = registry.versions("old")
        assert [(v.version, v.state, v.prompt, v.params) for v in rows] == [
            (7, "live", "kept prompt", {"t": 1})
        ]
        registry.update_secretary("old", AssistantUpdate(prompt="new"))
        assert [v.version for v in registry.versions("old")] == [8, 7]
    finally:
        engine.dispose()
