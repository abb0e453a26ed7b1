"""Versions, rollouts, pins and catalog as code through the CLI, as SPEC.md shows them."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from secretaries_core.plumbing.db import make_engine
from tests.cli.conftest import Run, as_json, failed, ok
from tests.conftest import snapshot


def _seed(cli: Run) -> None:
    ok(cli("create", "alice", "--model", "echo", "--prompt", "You are Alice.", "--default"))
    ok(cli("create", "bob", "--model", "echo", "--prompt", "Line one\nLine two"))


def test_versions_diff_rollback_and_pins(cli: Run) -> None:
    _seed(cli)
    ok(cli("update", "alice", "--prompt", "You are Alice, brief.", "--note", "shorter"))
    ok(cli("update", "alice", "--model", "openai/m", "--draft", "--param", "temperature=0.3"))
    rows = as_json(cli("versions", "alice", "--json"))
    assert [(r["version"], r["state"], r["note"]) for r in rows] == [
        (3, "draft", None),
        (2, "live", "shorter"),
        (1, "retired", None),
    ]
    keys = {"version", "model", "prompt", "params", "note", "created_at", "state", "eval"}
    assert set(rows[0]) == keys and rows[0]["eval"] is None  # no eval run yet
    doc = as_json(cli("diff", "alice", "2", "3", "--json"))
    assert doc["model"] == {"from": "echo", "to": "openai/m"}
    assert doc["params"] == {"temperature": {"from": None, "to": 0.3}}
    assert set(doc) >= {"from", "to", "model", "params", "prompt_diff"}
    diff = as_json(cli("diff", "alice", "1", "2", "--json"))
    assert "-You are Alice." in diff["prompt_diff"] and diff["model"] is None
    ok(cli("users", "add", "5"))
    ok(cli("pin", "5", "alice", "--version", "1"))
    current = as_json(cli("current", "5", "--json"))
    assert (current["version"], current["version_source"]) == (1, "pinned")
    ok(cli("unpin", "5", "alice"))
    assert as_json(cli("current", "5", "--json"))["version_source"] == "live"
    ok(cli("rollback", "alice", "--to", "1"))
    assert as_json(cli("show", "alice", "--json"))["prompt"] == "You are Alice."
    assert as_json(cli("versions", "alice", "--json"))[0]["version"] == 4
    failed(cli("diff", "alice", "1", "99"), 1, "no version 99")


def test_rollout_commands_and_status_shape(cli: Run) -> None:
    _seed(cli)
    ok(cli("update", "alice", "--prompt", "candidate", "--draft"))
    status = as_json(cli("rollout", "start", "alice", "--percent", "30", "--json"))
    assert status["state"] == "running" and status["percent"] == 30
    side = {"version", "messages", "errors", "error_rate", "likes", "dislikes"}
    assert side <= set(status["live"]) and side <= set(status["candidate"])
    assert (status["live"]["version"], status["candidate"]["version"]) == (1, 2)
    failed(cli("rollout", "start", "alice", "--percent", "10"), 1, "Error:")
    assert as_json(cli("rollout", "set", "alice", "--percent", "60", "--json"))["percent"] == 60
    assert as_json(cli("versions", "alice", "--json"))[0]["state"] == "candidate"
    assert as_json(cli("rollout", "promote", "alice", "--json"))["state"] == "promoted"
    assert as_json(cli("show", "alice", "--json"))["prompt"] == "candidate"
    failed(cli("rollout", "abort", "alice"), 1, "no running rollout")
    failed(cli("rollout", "start", "alice", "--percent", "101"), 2)


def test_catalog_as_code_round_trip_and_changes(cli: Run, tmp_path: Path) -> None:
    _seed(cli)
    path = tmp_path / "catalog.yaml"
    ok(cli("export", "--output", str(path)))
    text = path.read_text()
    assert "prompt: |" in text and "Line two" in text
    assert as_json(cli("plan", str(path), "--json")) == {"changes": []}
    edited = text.replace("Line two", "Line 2") + (
        "- name: carol\n  model: echo\n  prompt: |\n    You are Carol.\n  default: true\n"
    )
    edited = edited.replace(
        "default: true\n  active: true\n  params: {}\n  prompt: |\n    You are Alice.",
        "default: false\n  active: true\n  params: {}\n  prompt: |\n    You are Alice.",
    )
    path.write_text(edited)
    changes = as_json(cli("plan", str(path), "--json"))["changes"]
    assert {(c["action"], c["secretary"]) for c in changes} == {
        ("update", "bob"),
        ("create", "carol"),
        ("set_default", "carol"),
    }
    bob = next(c for c in changes if c["secretary"] == "bob")
    assert bob["fields"] == ["prompt"] and "+Line 2" in bob["prompt_diff"]
    applied = as_json(cli("apply", str(path), "--yes", "--json"))["changes"]
    assert len(applied) == 3
    assert as_json(cli("plan", str(path), "--json")) == {"changes": []}
    assert as_json(cli("show", "carol", "--json"))["is_default"] is True
    # --prune deactivates what the file no longer has (never the default).
    path.write_text(
        edited.split("- name: bob")[0] + "- name: carol" + edited.split("- name: carol")[1]
    )
    pruned = as_json(cli("plan", str(path), "--prune", "--json"))["changes"]
    assert pruned == [{"action": "deactivate", "secretary": "bob", "fields": ["active"]}]


def test_apply_with_canary_rolls_changes_out(cli: Run, tmp_path: Path) -> None:
    _seed(cli)
    path = tmp_path / "catalog.yaml"
    ok(cli("export", "-o", str(path)))
    path.write_text(path.read_text().replace("Line two", "Line 2"))
    ok(cli("apply", str(path), "--canary", "25", "--yes"))
    status = as_json(cli("rollout", "status", "bob", "--json"))
    assert status["state"] == "running" and status["percent"] == 25
    assert as_json(cli("show", "bob", "--json"))["prompt"] == "Line one\nLine two"


BAD_FILES = [
    ("secretaries:\n  - name: x\n    model: echo\n    prompt: p\n    colour: red\n", "line 5"),
    ("secretaries:\n  - name: 'bad name!'\n    model: echo\n    prompt: p\n", "line 2"),
    (
        "secretaries:\n  - name: x\n    model: echo\n    prompt: p\n    default: true\n"
        "  - name: y\n    model: echo\n    prompt: p\n    default: true\n",
        "line 6",
    ),
    (
        "secretaries:\n  - name: x\n    model: echo\n    prompt: p\n"
        "  - name: x\n    model: echo\n    prompt: q\n",
        "line 5",
    ),
    ("secretaries:\n  - name: x\n    model: echo\n", "line 2"),
    ("others: []\n", "line 1"),
    ("secretaries: [\n", "line"),
]


@pytest.mark.parametrize(("body", "where"), BAD_FILES)
def test_bad_files_are_refused_with_the_line_and_nothing_written(
    cli: Run, db_url: str, tmp_path: Path, body: str, where: str
) -> None:
    _seed(cli)
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    engine: Engine = make_engine(db_url)
    before = snapshot(engine)
    for command in ("plan", "apply"):
        args = [command, str(path)] + (["--yes"] if command == "apply" else [])
        failed(cli(*args), 1, where)
    assert snapshot(engine) == before
    engine.dispose()


def test_usage_by_version(cli: Run) -> None:
    _seed(cli)
    ok(cli("chat", "5", "hello"))
    ok(cli("update", "alice", "--prompt", "You are Alice 2."))
    ok(cli("chat", "5", "again"))
    doc = as_json(cli("usage", "--by-version", "--json"))
    versions = doc["by_version"]["alice"]
    assert set(versions) == {"1", "2"}
    assert versions["1"]["messages"] == 1 and versions["2"]["messages"] == 1
    assert versions["2"]["prompt_tokens"] > 0
    assert doc["messages"] == 2  # the SPEC document is unchanged around it
