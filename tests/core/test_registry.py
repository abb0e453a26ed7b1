"""SecretaryRegistry on SQLite and PostgreSQL: catalog, users, links and resolution."""

from __future__ import annotations

from datetime import UTC

import pytest

from secretaries_core.catalog.models import AssistantCreate, AssistantUpdate
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.catalog.users_csv import UserRow
from secretaries_core.errors import (
    Conflict,
    InactiveSecretary,
    InvalidInput,
    NoDefaultSecretary,
    UnknownSecretary,
    UnknownUser,
)


def make(registry: SecretaryRegistry, name: str, *, default: bool = False, **params: object):  # type: ignore[no-untyped-def]
    return registry.create_secretary(
        AssistantCreate(
            name=name, model="echo", prompt=f"I am {name}", params=dict(params), is_default=default
        )
    )


def test_create_and_show(registry: SecretaryRegistry) -> None:
    sec = make(registry, "alice", temperature=0.2)
    assert sec.version == 1 and sec.is_active and not sec.is_default and sec.is_secretary
    assert sec.created_at.tzinfo is not None and sec.created_at.utcoffset() == UTC.utcoffset(None)
    detail = registry.secretary_detail("alice")
    assert detail.params == {"temperature": 0.2} and detail.prompt == "I am alice"
    assert detail.users == 0
    assert registry.secretary_detail(str(sec.id)).name == "alice"
    assert registry.get_secretary("alice").created_at.tzinfo is not None


def test_duplicate_name_is_a_conflict(registry: SecretaryRegistry) -> None:
    make(registry, "alice")
    with pytest.raises(Conflict, match="already exists"):
        make(registry, "alice")
    assert len(registry.list_secretaries()) == 1


@pytest.mark.parametrize("name", ["", "  ", "123e4567-e89b-12d3-a456-426614174000"])
def test_bad_names_are_refused(registry: SecretaryRegistry, name: str) -> None:
    with pytest.raises(InvalidInput):
        make(registry, name)


def test_one_default_at_a_time(registry: SecretaryRegistry) -> None:
    make(registry, "alice", default=True)
    make(registry, "bob", default=True)
    defaults = [s.name for s in registry.list_secretaries() if s.is_default]
    assert defaults == ["bob"]
    assert registry.set_default("alice").changed
    assert registry.set_default("alice").changed is False
    assert [s.name for s in registry.list_secretaries() if s.is_default] == ["alice"]


def test_update_bumps_version_only_for_model_prompt_params(registry: SecretaryRegistry) -> None:
    make(registry, "alice", temperature=0.2, top_p=0.9)
    change = registry.update_secretary("alice", AssistantUpdate(description="nice", name="alicia"))
    assert change.changed and change.secretary.version == 1
    change = registry.update_secretary("alicia", AssistantUpdate(prompt="new prompt"))
    assert change.secretary.version == 2
    change = registry.update_secretary(
        "alicia", AssistantUpdate(params={"temperature": 0.5, "top_p": None})
    )
    assert change.secretary.version == 3 and change.secretary.params == {"temperature": 0.5}
    change = registry.update_secretary("alicia", AssistantUpdate(model="openai/gpt-4o-mini"))
    assert change.secretary.version == 4
    same = registry.update_secretary(
        "alicia", AssistantUpdate(model="openai/gpt-4o-mini", prompt="new prompt")
    )
    assert not same.changed and same.secretary.version == 4
    with pytest.raises(UnknownSecretary):
        registry.get_secretary("alice")


def test_update_to_taken_name_is_a_conflict(registry: SecretaryRegistry) -> None:
    make(registry, "alice")
    make(registry, "bob")
    with pytest.raises(Conflict):
        registry.update_secretary("bob", AssistantUpdate(name="alice"))
    assert registry.get_secretary("bob").name == "bob"


def test_resolution_sources(registry: SecretaryRegistry) -> None:
    registry.add_user(1, "ann")
    make(registry, "bob")
    with pytest.raises(NoDefaultSecretary):
        registry.resolve(1)
    make(registry, "alice", default=True)
    found = registry.resolve(1)
    assert (found.secretary.name, found.source) == ("alice", "default")
    registry.assign(1, "bob")
    found = registry.resolve("@ann")
    assert (found.secretary.name, found.source) == ("bob", "assigned")
    registry.deactivate("bob")
    found = registry.resolve(1)
    assert (found.secretary.name, found.source) == ("alice", "fallback")
    registry.activate("bob")
    assert registry.resolve(1).source == "assigned"
    with pytest.raises(UnknownUser):
        registry.resolve(2)


def test_assign_switches_and_keeps_history(registry: SecretaryRegistry) -> None:
    registry.add_user(7)
    make(registry, "alice", default=True)
    make(registry, "bob")
    first = registry.assign(7, "bob")
    assert first.changed and first.previous is None
    again = registry.assign(7, "bob")
    assert not again.changed and again.previous == "bob"
    switched = registry.assign(7, "alice")
    assert switched.changed and switched.previous == "bob"
    history = registry.history(7)
    assert [(h.secretary, h.is_active) for h in history] == [("alice", True), ("bob", False)]
    assert registry.list_secretaries()[0].users == 1  # alice


def test_assign_errors_change_nothing(registry: SecretaryRegistry) -> None:
    registry.add_user(7)
    make(registry, "alice", default=True)
    make(registry, "bob")
    registry.deactivate("bob")
    with pytest.raises(InactiveSecretary):
        registry.assign(7, "bob")
    with pytest.raises(UnknownSecretary):
        registry.assign(7, "carol")
    with pytest.raises(UnknownUser):
        registry.assign(8, "alice")
    assert registry.history(7) == []


def test_deactivate_rules(registry: SecretaryRegistry) -> None:
    make(registry, "alice", default=True)
    make(registry, "bob")
    make(registry, "carol")
    for tid in (1, 2, 3):
        registry.add_user(tid)
        registry.assign(tid, "bob")
    with pytest.raises(Conflict, match="default"):
        registry.deactivate("alice")
    with pytest.raises(Conflict):
        registry.deactivate("bob", reassign_to="bob")
    registry.deactivate("carol")
    with pytest.raises(InactiveSecretary):
        registry.deactivate("bob", reassign_to="carol")
    assert registry.get_secretary("bob").is_active
    change = registry.deactivate("bob", reassign_to="alice")
    assert change.changed and change.moved_users == 3
    assert {u.secretary for u in registry.list_users()} == {"alice"}
    assert [h.secretary for h in registry.history(1)] == ["alice", "bob"]
    assert not registry.deactivate("bob").changed
    with pytest.raises(InactiveSecretary):
        registry.set_default("bob")


def test_users_add_is_idempotent(registry: SecretaryRegistry) -> None:
    user, status = registry.add_user(5, "@Ann")
    assert status == "created" and user.username == "Ann"
    assert registry.add_user(5)[1] == "unchanged"
    assert registry.add_user(5, "Ann")[1] == "unchanged"
    user, status = registry.add_user(5, "ann2")
    assert status == "updated" and registry.get_user("@ANN2").telegram_id == 5
    with pytest.raises(InvalidInput):
        registry.add_user(0)
    with pytest.raises(InvalidInput):
        registry.add_user(6, "bad name!")


def test_import_users_in_bulk(registry: SecretaryRegistry) -> None:
    registry.add_user(1, "one")
    registry.add_user(2, "two")
    rows = [UserRow(1, "one"), UserRow(2, "deux"), UserRow(3, None)] + [
        UserRow(i, f"u{i}") for i in range(10, 1210)
    ]
    result = registry.import_users(rows)
    assert (result.created, result.updated, result.unchanged) == (1201, 1, 1)
    users = registry.list_users()
    assert len(users) == 1203 and registry.get_user(2).username == "deux"


def test_list_users_by_secretary(registry: SecretaryRegistry) -> None:
    make(registry, "alice", default=True)
    make(registry, "bob")
    for tid in (1, 2, 3):
        registry.add_user(tid)
    registry.assign(2, "bob")
    assert [u.telegram_id for u in registry.list_users(secretary="bob")] == [2]
    assert [(u.telegram_id, u.secretary) for u in registry.list_users()] == [
        (1, None),
        (2, "bob"),
        (3, None),
    ]


def test_change_listeners_hear_commits(registry: SecretaryRegistry) -> None:
    events: list[str] = []
    registry.subscribe(lambda event, _sec, _user: events.append(event))
    make(registry, "alice", default=True)
    registry.add_user(1)
    registry.assign(1, "alice")
    registry.assign(1, "alice")
    assert events.count("link") == 1 and "catalog" in events
