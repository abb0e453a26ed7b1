"""The embedded default, schema refusal, unreachable backends, and the installed executable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine
from tests.cli.conftest import Run, as_json, failed, ok
from tests.servers import free_port


def test_embedded_default_is_created_under_home(cli_default: Run, private_home: Path) -> None:
    assert not private_home.exists()
    assert as_json(cli_default("list", "--json")) == []
    db = private_home / "secretaries.db"
    assert db.is_file()
    engine = make_engine(f"sqlite:///{db}")
    assert schema.current_revision(engine) == schema.head_revision(engine)
    engine.dispose()
    ok(cli_default("create", "alice", "--model", "echo", "--prompt", "A", "--default"))
    assert [r["name"] for r in as_json(cli_default("list", "--json"))] == ["alice"]


def test_explicit_url_with_old_schema_is_refused(tmp_path: Path, cli_default: Run) -> None:
    url = f"sqlite:///{tmp_path / 'explicit.db'}"
    failed(cli_default("--database-url", url, "list"), 1, "secretaries db upgrade")
    assert "head" in ok(cli_default("--database-url", url, "db", "current")).stdout
    doc = as_json(cli_default("--database-url", url, "db", "current", "--json"))
    assert doc["current"] is None and doc["up_to_date"] is False
    assert "Upgraded" in ok(cli_default("--database-url", url, "db", "upgrade")).stdout
    assert "already at" in ok(cli_default("--database-url", url, "db", "upgrade")).stdout
    assert as_json(cli_default("--database-url", url, "list", "--json")) == []
    ok(cli_default("--database-url", url, "db", "downgrade", "base", "--yes"))
    failed(cli_default("--database-url", url, "list"), 1, "secretaries db upgrade")
    failed(cli_default("--database-url", url, "db", "upgrade", "nonexistent-rev"), 1)


def test_env_var_database_url(tmp_path: Path, cli_default: Run, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("SECRETARIES_DATABASE_URL", url)
    ok(cli_default("db", "upgrade"))
    ok(cli_default("create", "x", "--model", "echo", "--prompt", "p"))
    assert (tmp_path / "env.db").is_file()


def test_unreachable_database_exits_3_with_masked_password(cli_default: Run) -> None:
    url = f"postgresql://admin:s3cret-pw@127.0.0.1:{free_port()}/db"
    for args in (["list"], ["current", "1"], ["db", "upgrade"], ["db", "current"]):
        result = cli_default("--database-url", url, *args)
        failed(result, 3, "127.0.0.1", "***")
        assert "s3cret-pw" not in result.stderr + result.stdout


def _installed_executable() -> str:
    candidate = Path(sys.executable).parent / "secretaries"
    assert candidate.is_file(), (
        "the `secretaries` console script is not installed in this environment"
    )
    return str(candidate)


def test_installed_executable_runs_a_session(tmp_path: Path) -> None:
    env = {**os.environ, "SECRETARIES_HOME": str(tmp_path / "home")}
    env.pop("SECRETARIES_DATABASE_URL", None)
    exe = _installed_executable()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=60)

    assert run("create", "alice", "--model", "echo", "--prompt", "A", "--default").returncode == 0
    assert run("users", "add", "7", "--username", "seven").returncode == 0
    current = run("current", "@seven", "--json")
    assert current.returncode == 0 and json.loads(current.stdout)["source"] == "default"
    bad = run("assign", "7", "nobody")
    assert (
        bad.returncode == 1 and bad.stderr.startswith("Error: ") and "Traceback" not in bad.stderr
    )
    usage = run("current", "not-a-user")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr
    module = subprocess.run(
        [sys.executable, "-m", "secretaries_cli", "list", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert module.returncode == 0 and json.loads(module.stdout)[0]["name"] == "alice"


def test_db_upgrade_and_downgrade_speak_json(cli_default: Run, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'j.db'}"
    up = as_json(cli_default("--database-url", url, "db", "upgrade", "--json"))
    assert up["from"] is None and up["changed"] and up["nonconforming_names"] == []
    head = up["to"]
    again = as_json(cli_default("--database-url", url, "db", "upgrade", "--json"))
    assert again == {"from": head, "to": head, "changed": False, "nonconforming_names": []}
    down = as_json(cli_default("--database-url", url, "db", "downgrade", "0004", "--yes", "--json"))
    assert down == {"from": head, "to": "0004", "changed": True}
    now = as_json(cli_default("--database-url", url, "db", "current", "--json"))
    assert now["current"] == "0004" and not now["up_to_date"]


def test_a_database_at_head_is_answered_without_alembic(tmp_path: Path) -> None:
    """`db upgrade` at head (every deployment's start-up) and a downgrade to where the
    database already is run nothing, and do not load Alembic or the ORM to find that out."""
    url = f"sqlite:///{tmp_path / 'h.db'}"
    from secretaries_core.plumbing import schema
    from secretaries_core.plumbing.db import make_engine

    engine = make_engine(url)
    schema.upgrade(engine)
    engine.dispose()
    probe = (
        "import sys\n"
        "from secretaries_core.plumbing import schema\n"
        "from secretaries_core.plumbing.db import make_engine\n"
        f"engine = make_engine({url!r})\n"
        "schema.upgrade(engine)\n"
        "schema.upgrade(engine, schema.HEAD_REVISION)\n"
        "schema.downgrade(engine, 'head')\n"
        "schema.downgrade(engine, schema.HEAD_REVISION)\n"
        "print(schema.current_revision(engine), [m for m in ('alembic', 'sqlalchemy.orm')"
        " if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    from secretaries_core.plumbing.schema import HEAD_REVISION

    assert done.stdout.strip() == f"{HEAD_REVISION} []", done.stderr
