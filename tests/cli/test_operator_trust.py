"""What an operator (or an attacker typing into the bot) tried, through the real CLI.

Each test reproduces an input that crashed, leaked or misbehaved before, and checks the
exit code, the `Error:` line, what is shown, and that nothing was written.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import event

from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.errors import BackendUnavailable
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine
from tests.cli.conftest import Run, as_json, failed, ok


def _alice(cli: Run) -> None:
    ok(cli("create", "alice", "--model", "echo", "--prompt", "A", "--default"))


# -- hostile text on the operator's terminal -------------------------------------------------


def test_chat_text_with_markup_is_shown_literally(cli: Run) -> None:
    _alice(cli)
    ok(cli("chat", "5", "[/oops] and [bob] hello and [bold]x"))
    shown = ok(cli("contexts", "show", "5")).stdout
    assert "[/oops]" in shown and "[bob] hello" in shown and "[bold]x" in shown


def test_a_description_with_markup_does_not_break_list(cli: Run) -> None:
    ok(cli("create", "alice", "--model", "echo", "--prompt", "A", "--description", "[/] desc"))
    assert "[/] desc" in ok(cli("list")).stdout
    assert "[/] desc" in ok(cli("list")).stdout  # and every later list


def test_escape_sequences_never_reach_the_terminal(cli: Run) -> None:
    _alice(cli)
    ok(cli("chat", "6", "evil \x1b]0;pwned\x07 \x1b[2J text"))
    shown = ok(cli("contexts", "show", "6")).stdout
    assert "\x1b" not in shown and "\x07" not in shown and "text" in shown


# -- secrets ---------------------------------------------------------------------------------


def test_percent_encoded_password_upgrades_and_never_prints(cli_default: Run, pg_url: str) -> None:
    url = pg_url.replace("postgres@", "postgres:S3cr3t%23x@", 1)
    assert "S3cr3t" in url
    result = ok(cli_default("--database-url", url, "db", "upgrade"))
    assert "S3cr3t" not in result.stdout + result.stderr
    result = ok(cli_default("--database-url", url, "db", "downgrade", "0002", "--yes"))
    assert "S3cr3t" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:hunter2@127.0.0.1:1/db",
        "postgresql://u:hun@ter2@127.0.0.1:1/db",
        "postgresql://u@127.0.0.1:1/db?password=hunter2",
        "postgresql://u:hunter2@127.0.0.1:notaport/db",
        "nonsense://u:hunter2@",
    ],
)
def test_passwords_never_leak_in_any_url_form(cli_default: Run, url: str) -> None:
    result = cli_default("--database-url", url, "list")
    assert result.exit_code in (1, 3), (result.stdout, result.stderr)
    assert result.stderr.startswith("Error: ")
    assert "hunter2" not in result.stdout + result.stderr and "ter2" not in result.stderr
    assert "Traceback" not in result.stderr


def test_a_percent_in_the_data_home_works(tmp_path: Path) -> None:
    home = tmp_path / "x%y"
    env = {**os.environ, "SECRETARIES_HOME": str(home)}
    env.pop("SECRETARIES_DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "secretaries_cli", "list"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert (home / "secretaries.db").exists()


# -- database errors -------------------------------------------------------------------------


def test_sqlite_busy_is_a_clear_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'busy.db'}"
    engine = make_engine(url)
    schema.upgrade(engine)

    @event.listens_for(engine, "connect")
    def short_timeout(dbapi_connection: object, _record: object) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout = 100")  # type: ignore[attr-defined]

    engine.dispose()
    holder = make_engine(url)
    # Another process holding the write lock (a long `users import`, say).
    with holder.execution_options(sqlite_begin="IMMEDIATE").begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO telegramuser (telegram_id, created_at, updated_at)"
            " VALUES (1, '2026-01-01', '2026-01-01')"
        )
        with pytest.raises(BackendUnavailable, match="is busy"):
            SecretaryRegistry(engine).add_user(9)
        conn.rollback()
    assert SecretaryRegistry(engine).add_user(9)[1] == "created"


# -- users and their references --------------------------------------------------------------


@pytest.mark.parametrize("ref", ["@@x", "\u0668\u0660\u0660", "\uff18\uff10\uff10", "\u00b2"])
def test_malformed_user_refs_are_usage_errors(cli: Run, ref: str) -> None:
    _alice(cli)
    failed(cli("current", ref), 2)


def test_version(cli_default: Run) -> None:
    assert ok(cli_default("--version")).stdout.startswith("secretaries ")


def test_an_excel_csv_with_a_bom_imports(cli: Run, tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text("\ufefftelegram_id,username\n70,a\n", encoding="utf-8")
    ok(cli("users", "import", str(path)))
    assert [u["telegram_id"] for u in as_json(cli("users", "list", "--json"))] == [70]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("telegram_id,username\n\u0668\u0660\u0660\u0660\u0662\u0661,x\n", "line 2"),
        ("telegram_id,username\n²,x\n", "line 2"),
        ('telegram_id,username\n71,"abc\n72,b\n', "CSV"),
        ("telegram_id,username\n73," + "x" * 200_000 + "\n", "line 2"),
    ],
    ids=["arabic-indic", "superscript", "unterminated-quote", "huge-field"],
)
def test_bad_csv_files_are_refused_whole(
    cli: Run, tmp_path: Path, content: str, fragment: str
) -> None:
    path = tmp_path / "users.csv"
    path.write_text(content, encoding="utf-8")
    failed(cli("users", "import", str(path)), 1, fragment)
    assert as_json(cli("users", "list", "--json")) == []


def test_a_username_moves_to_its_new_holder(cli: Run) -> None:
    ok(cli("users", "add", "1", "--username", "ann"))
    said = ok(cli("users", "add", "2", "--username", "Ann")).stdout
    assert "held by user 1" in said
    users = {u["telegram_id"]: u["username"] for u in as_json(cli("users", "list", "--json"))}
    assert users == {1: None, 2: "Ann"}
    _alice(cli)
    assert as_json(cli("current", "@ann", "--json"))["user"]["telegram_id"] == 2


@pytest.mark.parametrize("name", ["bad name!", "tab\tname", "x" * 65, "ctrl\x01"])
def test_secretary_names_follow_the_rule(cli: Run, name: str) -> None:
    failed(cli("create", name, "--model", "echo", "--prompt", "p"), 1, "invalid secretary name")
    assert as_json(cli("list", "--all", "--json")) == []


def test_names_are_unique_regardless_of_case_and_prompts_refuse_control_chars(cli: Run) -> None:
    _alice(cli)
    failed(cli("create", "ALICE", "--model", "echo", "--prompt", "p"), 1, "already exists")
    failed(cli("create", "bob", "--model", "echo", "--prompt", "p\x1b[2J"), 1, "control")
    ok(cli("create", "bob", "--model", "echo", "--prompt", "line one\n\tline two"))


def test_first_run_error_says_to_create_a_secretary(cli: Run) -> None:
    ok(cli("users", "add", "3"))
    failed(cli("current", "3"), 1, "secretaries create")


def test_db_downgrade_asks_first(cli: Run) -> None:
    _alice(cli)
    failed(cli("db", "downgrade", "base"), 1, "--yes")
    assert len(as_json(cli("list", "--json"))) == 1


# -- erasing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("store", ["database", "redis"])
def test_users_delete_erases_everything(cli: Run, redis_url: str, store: str) -> None:
    extra = ["--context-url", redis_url.rsplit("/", 1)[0] + "/6"] if store == "redis" else []
    # Ids of their own: other runs of this test share the Redis database.
    uid, other = (str(random.randrange(10**9, 10**12)) for _ in range(2))
    _alice(cli)
    ok(cli("create", "bob", "--model", "echo", "--prompt", "B"))
    ok(cli(*extra, "chat", uid, "one"))
    ok(cli("assign", uid, "bob"))
    ok(cli(*extra, "chat", uid, "two"))
    ok(cli(*extra, "chat", other, "someone else"))
    failed(cli(*extra, "users", "delete", uid), 1, "--yes")
    doc = as_json(cli(*extra, "users", "delete", uid, "--yes", "--json"))
    assert {k: doc[k] for k in ("telegram_id", "links", "contexts", "usage_rows")} == {
        "telegram_id": int(uid),
        "links": 1,
        "contexts": 2,
        "usage_rows": 2,
    }
    failed(cli("current", uid), 1, f"no user {uid}")
    assert as_json(cli(*extra, "contexts", "show", other, "--json"))["contexts"]
    # Usage stays in the totals (under no user), none of it is the erased user's any more.
    assert as_json(cli("usage", "--json"))["messages"] == 3
    assert as_json(cli("usage", "--user", other, "--json"))["messages"] == 1
    failed(cli(*extra, "users", "delete", uid, "--yes"), 1, f"no user {uid}")
    ok(cli(*extra, "chat", uid, "back again"))
    # A returning user starts from nothing.
    shown = as_json(cli(*extra, "contexts", "show", uid, "--json"))
    assert next(m["content"] for c in shown["contexts"] for m in c["messages"]) == "back again"


def test_delete_only_a_secretary_nobody_ever_had(cli: Run) -> None:
    _alice(cli)
    ok(cli("create", "typo", "--model", "echo", "--prompt", "p"))
    ok(cli("create", "bob", "--model", "echo", "--prompt", "p"))
    ok(cli("users", "add", "1"))
    ok(cli("assign", "1", "bob"))
    ok(cli("assign", "1", "alice"))
    failed(cli("delete", "bob", "--yes"), 1, "deactivate")
    failed(cli("delete", "alice", "--yes"), 1, "default")
    assert as_json(cli("delete", "typo", "--yes", "--json"))["name"] == "typo"
    assert sorted(s["name"] for s in as_json(cli("list", "--all", "--json"))) == ["alice", "bob"]


def test_help_shows_what_to_type_not_python_types(cli_default: Run) -> None:
    import typer

    from secretaries_cli.app import app
    from tests.test_docs import _command_paths

    for path in _command_paths(typer.main.get_command(app)):
        shown = ok(cli_default(*path.split(), "--help")).stdout
        for leak in ("<bool>", "<Any>", "[[", "]]"):
            assert leak not in shown, (path, leak)


def test_an_import_moves_usernames_and_refuses_a_file_that_repeats_one(
    cli: Run, tmp_path: Path
) -> None:
    ok(cli("users", "add", "1", "--username", "ann"))
    path = tmp_path / "users.csv"
    path.write_text("telegram_id,username\n2,ANN\n3,cid\n", encoding="utf-8")
    ok(cli("users", "import", str(path)))
    users = {u["telegram_id"]: u["username"] for u in as_json(cli("users", "list", "--json"))}
    assert users == {1: None, 2: "ANN", 3: "cid"}
    path.write_text("telegram_id,username\n4,dee\n5,Dee\n", encoding="utf-8")
    failed(cli("users", "import", str(path)), 1, "line 3", "repeats line 2")
    assert len(as_json(cli("users", "list", "--json"))) == 3


def test_old_names_that_break_the_rules_are_reported_not_rewritten(
    cli_default: Run, tmp_path: Path
) -> None:
    from sqlalchemy import text

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    schema.upgrade(engine, "0003")
    with engine.begin() as conn:
        for i, name in enumerate(["bad name!", "Dup", "dup"]):
            conn.execute(
                text(
                    "INSERT INTO assistant (id, name, description, model, prompt, params,"
                    " is_secretary, is_active, is_default, version, created_at, updated_at)"
                    " VALUES (:id, :n, '', 'echo', 'p', '{}', 1, 1, :d, 1, :t, :t)"
                ),
                {"id": f"{i:032x}", "n": name, "d": i == 0, "t": "2026-01-01 00:00:00"},
            )
    engine.dispose()
    said = ok(cli_default("--database-url", url, "db", "upgrade")).stdout
    assert "'bad name!'" in said and "regardless of case" in said
    names = [s["name"] for s in as_json(cli_default("--database-url", url, "list", "--json"))]
    assert sorted(names) == ["Dup", "bad name!", "dup"]
    doc = as_json(cli_default("--database-url", url, "chat", "1", "hi", "--json"))
    assert doc["secretary"] == "bad name!"


def test_help_keeps_bracketed_words(cli_default: Run) -> None:
    # Rich would read `[telegram]` as a markup tag and drop it.
    assert "telegram" in ok(cli_default("bot", "--help")).stdout
    assert "api" in ok(cli_default("serve", "--help")).stdout.lower()


@pytest.mark.parametrize(
    "args",
    [
        ["create", "x1", "--model", "a\U0001f600b", "--prompt", "p"],
        ["create", "x2", "--model", "echo", "--prompt", "p", "--param", "k=a\udcffb"],
        ["create", "x3", "--model", "echo", "--prompt", "p\udcff"],
    ],
)
def test_unstorable_input_is_exit_2_and_nothing_written(
    cli: Run, db_url: str, args: list[str]
) -> None:
    from tests.conftest import snapshot

    engine = make_engine(db_url)
    ok(cli("list"))  # the schema exists before the snapshot
    before = snapshot(engine)
    failed(cli(*args), 2, "Error:")
    assert snapshot(engine) == before
    engine.dispose()
    assert cli("list", "--all", "--json").exit_code == 0


def test_a_provider_repeating_the_key_leaks_it_nowhere(
    cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.llm_server import Script, llm_server

    key = "sk-proj-NEVERSHOWN0123456789abcdef"
    with llm_server(Script(default="keyecho")) as (url, script):
        monkeypatch.setenv("SECRETARIES_OPENAI_BASE_URL", url)
        monkeypatch.setenv("SECRETARIES_OPENAI_API_KEY", key)
        monkeypatch.setenv("SECRETARIES_MODEL_RETRIES", "0")
        ok(cli("create", "k", "--model", "openai/m", "--prompt", "p", "--default"))
        result = cli("chat", "5", "hello")
        assert result.exit_code != 0
        assert script.requests
        assert key not in result.stdout + result.stderr
        assert "NEVERSHOWN" not in result.stdout + result.stderr


def test_bot_refuses_a_missing_token_before_loading_aiogram(tmp_path: Path) -> None:
    import time as clock

    env = {k: v for k, v in os.environ.items() if not k.startswith("SECRETARIES_")}
    env["SECRETARIES_HOME"] = str(tmp_path)
    started = clock.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "secretaries_cli", "bot"], env=env, capture_output=True, text=True
    )
    took = clock.monotonic() - started
    assert done.returncode == 1 and done.stderr.startswith("Error: no bot token"), done.stderr
    assert took < 5, took  # no aiogram import (it alone takes seconds on a loaded machine)
    garbage = subprocess.run(
        [sys.executable, "-m", "secretaries_cli", "bot", "--token", "1:AA", "--api-url", "x:y:z"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert garbage.returncode == 2, garbage.stderr


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("sqlite:////nonexistent-secretaries-dir/sub/x.db", "does not exist"),
        ("mysql://u:pw@127.0.0.1/db", "unsupported database"),
    ],
)
def test_unusable_database_locations_say_so_and_create_nothing(
    cli_default: Run, url: str, fragment: str
) -> None:
    result = cli_default("--database-url", url, "list")
    failed(result, 1, fragment)
    assert "pw" not in result.stderr.replace("pw@", "")
    assert not Path("/nonexistent-secretaries-dir").exists()


def test_an_unusable_data_dir_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for home in (str(blocker), "/proc/nope-secretaries"):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SECRETARIES_")}
        env["SECRETARIES_HOME"] = home
        done = subprocess.run(
            [sys.executable, "-m", "secretaries_cli", "list"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 1, done.stderr
        assert done.stderr.startswith("Error: cannot use the data directory"), done.stderr
        assert "Traceback" not in done.stderr


def test_a_model_server_that_refuses_connections_says_so(
    cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.servers import free_port

    monkeypatch.setenv("SECRETARIES_OPENAI_BASE_URL", f"http://127.0.0.1:{free_port()}/v1")
    monkeypatch.setenv("SECRETARIES_MODEL_RETRIES", "0")
    ok(cli("create", "m", "--model", "openai/m", "--prompt", "p", "--default"))
    failed(cli("chat", "5", "hello"), 3, "cannot connect (connection refused)")


def test_a_name_over_100_characters_is_an_error_line_not_a_traceback(cli: Run) -> None:
    rule = "use 1 to 64 ASCII letters, digits, '-', '_' or '.'"
    failed(cli("create", "a" * 101, "--model", "echo", "--prompt", "p"), 1, rule)
    # "Letters" are ASCII ones, and the message says so.
    failed(cli("create", "ålice", "--model", "echo", "--prompt", "p"), 1, rule)
    assert as_json(cli("list", "--all", "--json")) == []
