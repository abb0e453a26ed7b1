"""Catalog commands through the CLI: output shapes, every refusal, and the database unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.cli.conftest import Run, as_json, failed, ok
from tests.conftest import snapshot

SECRETARY_KEYS = {
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


@pytest.fixture
def catalog(cli: Run) -> Run:
    ok(cli("create", "alice", "--model", "echo", "--prompt", "You are Alice.", "--default"))
    ok(
        cli(
            "create",
            "bob",
            "--model",
            "echo",
            "--prompt",
            "You are Bob.",
            "--param",
            "temperature=0.3",
            "--param",
            "style=brief",
            "--description",
            "terse",
        )
    )
    return cli


def test_list_and_show_json_shapes(catalog: Run, tmp_path: Path) -> None:
    rows = as_json(catalog("list", "--json"))
    assert [r["name"] for r in rows] == ["alice", "bob"]
    assert all(set(r) >= SECRETARY_KEYS for r in rows)
    bob = rows[1]
    assert bob["params"] == {"temperature": 0.3, "style": "brief"} and bob["version"] == 1
    detail = as_json(catalog("show", "bob", "--json"))
    assert set(detail) >= SECRETARY_KEYS | {"prompt", "created_at", "updated_at"}
    assert detail["prompt"] == "You are Bob." and detail["description"] == "terse"
    assert as_json(catalog("show", bob["id"], "--json"))["name"] == "bob"
    assert "alice" in ok(catalog("list")).stdout


def test_update_bumps_version_and_prompt_file(catalog: Run, tmp_path: Path) -> None:
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("You are Robert.\nBe brief.", encoding="utf-8")
    ok(catalog("update", "bob", "--prompt-file", str(prompt)))
    detail = as_json(catalog("show", "bob", "--json"))
    assert detail["version"] == 2 and detail["prompt"] == "You are Robert.\nBe brief."
    ok(catalog("update", "bob", "--description", "new words"))
    assert as_json(catalog("show", "bob", "--json"))["version"] == 2
    ok(catalog("update", "bob", "--param", "temperature=0.9"))
    detail = as_json(catalog("show", "bob", "--json"))
    assert detail["version"] == 3 and detail["params"]["temperature"] == 0.9
    assert "Nothing changed" in ok(catalog("update", "bob", "--param", "temperature=0.9")).stdout


def test_set_default_deactivate_activate(catalog: Run) -> None:
    ok(catalog("set-default", "bob"))
    rows = {r["name"]: r for r in as_json(catalog("list", "--json"))}
    assert rows["bob"]["is_default"] and not rows["alice"]["is_default"]
    ok(catalog("deactivate", "alice"))
    assert [r["name"] for r in as_json(catalog("list", "--json"))] == ["bob"]
    assert len(as_json(catalog("list", "--all", "--json"))) == 2
    assert "Nothing changed" in ok(catalog("deactivate", "alice")).stdout
    ok(catalog("activate", "alice"))
    assert len(as_json(catalog("list", "--json"))) == 2


def test_deactivate_with_reassign_moves_users(catalog: Run) -> None:
    for tid in ("1", "2"):
        ok(catalog("users", "add", tid))
        ok(catalog("assign", tid, "bob"))
    out = ok(catalog("deactivate", "bob", "--reassign-to", "alice")).stdout
    assert "Moved 2 user(s)" in out
    current = as_json(catalog("current", "1", "--json"))
    assert current["secretary"]["name"] == "alice" and current["source"] == "assigned"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["create", "alice", "--model", "echo", "--prompt", "x"], "already exists"),
        (["update", "bob", "--name", "alice"], "already exists"),
        (["update", "carol", "--model", "x"], "no secretary 'carol'"),
        (["show", "carol"], "no secretary"),
        (["set-default", "carol"], "no secretary"),
        (["deactivate", "alice"], "default"),
        (["deactivate", "carol"], "no secretary"),
        (["deactivate", "bob", "--reassign-to", "carol"], "no secretary"),
        (["deactivate", "bob", "--reassign-to", "bob"], "itself"),
        (["activate", "carol"], "no secretary"),
    ],
)
def test_refusals_exit_1_and_change_nothing(
    catalog: Run, engine: Engine, args: list[str], fragment: str
) -> None:
    before = snapshot(engine)
    failed(catalog(*args), 1, fragment)
    assert snapshot(engine) == before


def test_inactive_secretary_cannot_be_default(catalog: Run, engine: Engine) -> None:
    ok(catalog("deactivate", "bob"))
    before = snapshot(engine)
    failed(catalog("set-default", "bob"), 1, "inactive", "secretaries activate bob")
    assert snapshot(engine) == before


@pytest.mark.parametrize(
    "args",
    [
        ["create", "carol", "--model", "echo"],
        ["create", "carol", "--model", "echo", "--prompt", "x", "--prompt-file", "/etc/hostname"],
        ["create", "carol", "--model", "echo", "--prompt-file", "/nonexistent/prompt.txt"],
        ["create", "carol", "--model", "echo", "--prompt", "x", "--param", "novalue"],
        ["create", "carol", "--prompt", "x"],
        ["list", "--bogus"],
    ],
)
def test_usage_errors_exit_2(catalog: Run, engine: Engine, args: list[str]) -> None:
    before = snapshot(engine)
    failed(catalog(*args), 2)
    assert snapshot(engine) == before
