"""users, assign, current, history and migrate-users through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.cli.conftest import Run, as_json, failed, ok
from tests.conftest import snapshot


@pytest.fixture
def world(cli: Run) -> Run:
    ok(cli("create", "alice", "--model", "echo", "--prompt", "A", "--default"))
    ok(cli("create", "bob", "--model", "echo", "--prompt", "B"))
    ok(cli("users", "add", "42", "--username", "ann"))
    ok(cli("users", "add", "43"))
    return cli


def test_assign_current_history(world: Run) -> None:
    doc = as_json(world("current", "42", "--json"))
    assert doc["source"] == "default" and doc["secretary"]["name"] == "alice"
    assert doc["user"] == {"telegram_id": 42, "username": "ann"}
    assert "now has bob" in ok(world("assign", "@ann", "bob")).stdout
    assert "Nothing changed" in ok(world("assign", "42", "bob")).stdout
    doc = as_json(world("current", "@ann", "--json"))
    assert doc["source"] == "assigned" and doc["secretary"]["name"] == "bob"
    assert doc["secretary"]["users"] == 1
    ok(world("assign", "42", "alice"))
    history = as_json(world("history", "42", "--json"))
    assert [(h["secretary"], h["is_active"]) for h in history] == [("alice", True), ("bob", False)]
    assert set(history[0]) >= {"secretary_id", "secretary", "is_active", "created_at", "updated_at"}
    ok(world("assign", "43", "bob"))
    ok(world("deactivate", "bob"))
    assert as_json(world("current", "43", "--json"))["source"] == "fallback"
    assert "fallback" in ok(world("current", "43")).stdout


def test_users_list_and_add_idempotent(world: Run) -> None:
    assert "unchanged" in ok(world("users", "add", "42")).stdout
    assert "updated" in ok(world("users", "add", "42", "--username", "@anna")).stdout
    ok(world("assign", "43", "bob"))
    rows = as_json(world("users", "list", "--json"))
    assert [(r["telegram_id"], r["username"], r["secretary"]) for r in rows] == [
        (42, "anna", None),
        (43, None, "bob"),
    ]
    assert [
        r["telegram_id"] for r in as_json(world("users", "list", "--secretary", "bob", "--json"))
    ] == [43]
    assert "43" in ok(world("users", "list")).stdout


def test_users_import(world: Run, tmp_path: Path) -> None:
    good = tmp_path / "users.csv"
    good.write_text("telegram_id,username\n42,ann\n43,newname\n44,\n45,@zed\n", encoding="utf-8")
    doc = as_json(world("users", "import", str(good), "--json"))
    assert doc == {"created": 2, "updated": 1, "unchanged": 1}
    again = ok(world("users", "import", str(good))).stdout
    assert "0 created, 0 updated, 4 unchanged" in again
    assert as_json(world("current", "@zed", "--json"))["user"]["telegram_id"] == 45


def test_users_import_bad_file_writes_nothing(world: Run, engine: Engine, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "telegram_id,username\n50,fine\nabc,x\n51,ok\n-3,y\n52,bad name\n50,dup\n53,a,b\n",
        encoding="utf-8",
    )
    before = snapshot(engine)
    result = world("users", "import", str(bad))
    failed(result, 1, "line 3", "line 5", "line 6", "line 7", "line 8")
    assert "line 2:" not in result.stderr and "line 4:" not in result.stderr
    assert snapshot(engine) == before
    header = tmp_path / "header.csv"
    header.write_text("id,name\n1,x\n", encoding="utf-8")
    failed(world("users", "import", str(header)), 1, "header")
    assert snapshot(engine) == before


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["assign", "99", "bob"], "no user 99"),
        (["assign", "@nobody", "bob"], "no user @nobody"),
        (["assign", "42", "carol"], "no secretary 'carol'"),
        (["current", "99"], "users add"),
        (["history", "99"], "no user"),
        (["users", "list", "--secretary", "carol"], "no secretary"),
        (["migrate-users", "--to", "carol"], "no secretary"),
        (["migrate-users", "--from", "bob", "--to", "bob"], "both"),
    ],
)
def test_link_refusals_exit_1(world: Run, engine: Engine, args: list[str], fragment: str) -> None:
    before = snapshot(engine)
    failed(world(*args), 1, fragment)
    assert snapshot(engine) == before


def test_inactive_and_no_default_refusals(world: Run, engine: Engine) -> None:
    ok(world("deactivate", "bob"))
    before = snapshot(engine)
    failed(world("assign", "42", "bob"), 1, "inactive")
    failed(world("migrate-users", "--to", "bob"), 1, "inactive")
    assert snapshot(engine) == before


def test_no_default_secretary(cli: Run, engine: Engine) -> None:
    ok(cli("create", "bob", "--model", "echo", "--prompt", "B"))
    ok(cli("users", "add", "1"))
    before = snapshot(engine)
    failed(cli("current", "1"), 1, "no secretary available", "set-default")
    failed(cli("migrate-users"), 1, "default")
    assert snapshot(engine) == before


@pytest.mark.parametrize(
    "user", ["abc", "0", "-5", "@", "@bad name", "1.5", "99999999999999999999"]
)
def test_malformed_user_exits_2(world: Run, engine: Engine, user: str) -> None:
    before = snapshot(engine)
    for command in (["assign", user, "bob"], ["current", user], ["history", user]):
        failed(world(*command), 2)
    assert snapshot(engine) == before


def test_migrate_users_cli(world: Run, engine: Engine) -> None:
    ok(world("assign", "42", "bob"))
    before = snapshot(engine)
    doc = as_json(world("migrate-users", "--dry-run", "--json"))
    assert doc == {"secretary": "alice", "migrated": 1, "dry_run": True}
    assert snapshot(engine) == before
    assert as_json(world("migrate-users", "--json", "--batch-size", "1")) == {
        "secretary": "alice",
        "migrated": 1,
        "dry_run": False,
    }
    assert as_json(world("migrate-users", "--json")) == {
        "secretary": "alice",
        "migrated": 0,
        "dry_run": False,
    }
    doc = as_json(world("migrate-users", "--from", "bob", "--to", "alice", "--json"))
    assert doc["migrated"] == 1
    assert "Linked 0 user(s)" in ok(world("migrate-users")).stdout
    failed(world("migrate-users", "--batch-size", "0"), 2)


def test_paging_users_history_contexts_and_usage(world: Run, tmp_path: Path) -> None:
    csv = tmp_path / "many.csv"
    csv.write_text("telegram_id,username\n" + "".join(f"{1000 + i},\n" for i in range(120)))
    ok(world("users", "import", str(csv)))
    everyone = as_json(world("users", "list", "--json"))
    page = as_json(world("users", "list", "--limit", "50", "--offset", "100", "--json"))
    assert [u["telegram_id"] for u in page] == [u["telegram_id"] for u in everyone[100:150]]
    assert len(page) == 22  # 122 users: 42, 43 and the 120 imported
    table = ok(world("users", "list", "--limit", "3")).stdout
    assert "1000" in table and "1002" not in table
    failed(world("users", "list", "--limit", "-1"), 2)
    # history: newest first, paged the same way
    for name in ("bob", "alice", "bob"):
        ok(world("assign", "42", name))
    links = as_json(world("history", "42", "--json"))
    assert as_json(world("history", "42", "--limit", "1", "--offset", "1", "--json")) == links[1:2]
    # contexts show and usage: rows of the first conversation, oldest first
    ok(world("chat", "42", "one"))
    ok(world("chat", "42", "two"))
    shown = as_json(world("contexts", "show", "42", "--limit", "2", "--offset", "1", "--json"))
    messages = shown["contexts"][0]["messages"]
    assert len(messages) == 2
    full = as_json(world("contexts", "show", "42", "--json"))["contexts"][0]["messages"]
    assert messages == full[1:3]
    report = as_json(world("usage", "--limit", "0", "--json"))
    assert report["days"] == [] and report["messages"] == 2
