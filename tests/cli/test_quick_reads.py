"""The quick reads (`list`, `show`, `current` without Typer) print what the Typer app prints.

Each case runs the console script (`secretaries`, quick path first) and the
Typer app alone, in fresh processes on the same database, and compares stdout, stderr and
exit codes byte for byte — over assigned, default and fallback users, a running rollout,
a pin, an inactive secretary, hostile text, and every error the three commands have.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from secretaries_cli.quick import Read, parse
from secretaries_core.catalog import reads
from secretaries_core.catalog.models import AssistantCreate, AssistantUpdate
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.catalog.rollout_hash import in_rollout
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine

HOSTILE = "Shows [b]markup[/b], 'quotes'\tand ünïcode 🦊"
# The catalog refuses control characters; a row written by hand may still hold one.
ESCAPED = "\x1b[31mred\x1b[0m by hand"
TYPER = "import sys; from secretaries_cli.app import main; sys.argv[0] = 'secretaries'; main()"


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, SecretaryRegistry]]:
    path = tmp_path_factory.mktemp("quick") / "catalog.db"
    yield from _seeded(f"sqlite:///{path}")


def _seeded(url: str) -> Iterator[tuple[str, SecretaryRegistry]]:
    """The catalog every comparison runs against, on the database `url` names."""
    engine = make_engine(url)
    schema.upgrade(engine)
    registry = SecretaryRegistry(engine)
    registry.create_secretary(
        AssistantCreate(
            name="alice",
            model="echo",
            prompt=f"Alice.\n{HOSTILE}",
            description=HOSTILE,
            params={"temperature": 0.2},
            is_default=True,
        )
    )
    registry.create_secretary(AssistantCreate(name="bob", model="echo", prompt="Bob."))
    registry.create_secretary(AssistantCreate(name="carol", model="echo", prompt="Carol."))
    for telegram_id, username in [(42, "Ann"), (43, None), (44, None), (45, "pinned")]:
        registry.register_user(telegram_id, username)
    for telegram_id in range(100, 140):
        registry.register_user(telegram_id, None)
    registry.assign(42, "bob")
    registry.assign(43, "carol")
    registry.deactivate("bob")  # 42 falls back to the default
    from secretaries_core.tools.registry import ToolRegistry
    from secretaries_core.tools.spec import ToolSpec

    for tool in ("cal", "mail"):
        spec = ToolSpec(tool, "http", url=f"http://127.0.0.1:9/{tool}", schema={"type": "object"})
        ToolRegistry(engine).add(spec)
    # An MCP server's tools are discovered by the Typer app: here it cannot start.
    ToolRegistry(engine).add(ToolSpec("srv", "mcp", command="/nonexistent/mcp-server"))
    registry.update_secretary(
        "alice", AssistantUpdate(model="echo-2", params={"tools": "cal, mail"}), draft=True,
        note=HOSTILE,
    )  # fmt: skip
    registry.update_secretary("carol", AssistantUpdate(prompt="Carol, briefly."), draft=True)
    alice = registry.get_secretary("alice").id
    registry.record_eval(alice, 2, passed=3, failed=1, failures=["greets"])
    registry.rollout_start("alice", percent=50)
    from secretaries_core.catalog.registry.rollouts import Judging

    registry.rollout_start("carol", percent=10, judge=Judging("Be brief.", sample=50))
    registry.rollout_abort("carol", reason=HOSTILE)
    with engine.begin() as conn:
        rollout = conn.execute(
            reads.ROLLOUT.select().where(reads.ROLLOUT.c.state == "running")
        ).one()
        conn.execute(
            reads.COUNT.insert().values(
                secretary_id=rollout.secretary_id, version=2, period=rollout.id.hex,
                messages=10, errors=1, prompt_tokens=100, completion_tokens=50, likes=2,
                dislikes=1, judged=0, judge_failed=0,
            )
        )  # fmt: skip
    registry.add_provider("local", "http://127.0.0.1:8080/v1?api_key=hidden", "LOCAL_KEY")
    from secretaries_core.catalog.api_tokens import ApiTokens

    ApiTokens(engine).create("bot-front", "ingress")
    registry.pin(45, "alice", 1)
    with engine.begin() as conn:
        conn.execute(
            reads.SECRETARY.update()
            .where(reads.SECRETARY.c.name == "carol")
            .values(description=ESCAPED)
        )
    yield url, registry
    engine.dispose()


def _run(url: str, args: list[str], *, typer_only: bool) -> tuple[int, str, str]:
    env = {**os.environ, "SECRETARIES_DATABASE_URL": url, "COLUMNS": "120"}
    # The installed console script: the entry every operator runs.
    entry = [str(Path(sys.executable).with_name("secretaries"))]
    command = [sys.executable, "-c", TYPER] if typer_only else entry
    done = subprocess.run([*command, *args], env=env, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout, done.stderr


def _rollout_users(registry: SecretaryRegistry) -> tuple[int, int]:
    """A default user inside the running rollout and one outside it."""
    from sqlalchemy import select

    with registry.engine.connect() as conn:
        rollout_id, secretary_id = conn.execute(
            select(reads.ROLLOUT.c.id, reads.ROLLOUT.c.secretary_id).where(
                reads.ROLLOUT.c.state == "running"
            )
        ).one()
    inside = [t for t in range(100, 140) if in_rollout(t, secretary_id, rollout_id, 50)]
    outside = [t for t in range(100, 140) if t not in inside]
    return inside[0], outside[0]


CASES = [
    ["list"],
    ["list", "--all"],
    ["list", "--json"],
    ["list", "--all", "--json"],
    ["show", "alice"],
    ["show", "bob", "--json"],
    ["show", "alice", "--json"],
    ["show", "carol"],
    ["show", "carol", "--json"],
    ["current", "42"],  # fallback: bob is inactive
    ["current", "@ann", "--json"],  # usernames match without case
    ["current", "43", "--json"],  # assigned
    ["current", "45"],  # pinned to version 1 during the rollout
    ["current", "45", "--json"],
    # Errors: the quick path gives up and the Typer app answers.
    ["current", "99"],
    ["current", "@nobody", "--json"],
    ["current", "0"],
    ["current", "@@x"],
    ["show", "nobody"],
    ["show", "nobody", "--json"],
    ["versions", "alice"],  # live, candidate (with an eval, tools and a hostile note)
    ["versions", "alice", "--json"],
    ["versions", "carol"],  # live, draft
    ["versions", "bob", "--json"],  # inactive
    ["versions", "nobody"],
    ["versions", "nobody", "--json"],
    ["users", "list"],
    ["users", "list", "--json", "--limit", "5", "--offset", "40"],
    ["users", "list", "--secretary=carol"],
    ["users", "list", "--secretary", "bob", "--json"],  # inactive: its links ended
    ["users", "list", "--secretary", "nobody"],
    ["users", "list", "--limit", "x"],
    ["users", "list", "--limit", "-1"],
    ["users", "list", "--limit"],
    ["history", "42"],  # bob's link ended when bob was deactivated
    ["history", "@ann", "--json"],
    ["history", "43", "--limit", "1", "--offset", "0", "--json"],
    ["history", "44"],  # no links at all
    ["history", "99"],
    ["history", "@nobody", "--json"],
    ["history", "0"],
    ["tools", "list"],
    ["tools", "list", "--json"],
    ["tokens", "list"],
    ["tokens", "list", "--json"],
    ["providers", "list"],
    ["providers", "list", "--json"],
    ["diff", "alice", "1", "2"],  # model and params changed, the same prompt
    ["diff", "carol", "1", "2", "--json"],  # the prompt changed
    ["diff", "alice", "2", "1", "--json"],
    ["diff", "alice", "1", "9"],  # no version 9: the registry's error
    ["diff", "nobody", "1", "2"],
    ["diff", "alice", "x", "2"],
    ["tools", "show", "cal"],
    ["tools", "show", "mail", "--json"],
    ["tools", "show", "nothing"],
    ["tools", "show", "srv"],
    ["rollout", "status", "alice"],  # running, with the candidate's counts
    ["rollout", "status", "alice", "--json"],
    ["rollout", "status", "carol"],  # aborted, judged, a hostile reason
    ["rollout", "status", "carol", "--json"],
    ["rollout", "status", "bob"],  # never had one: the registry's error
    ["rollout", "status", "nobody", "--json"],
]


@pytest.mark.parametrize("args", CASES, ids=" ".join)
def test_quick_read_prints_what_the_typer_app_prints(
    catalog: tuple[str, SecretaryRegistry], args: list[str]
) -> None:
    url, _registry = catalog
    quick = _run(url, args, typer_only=False)
    full = _run(url, args, typer_only=True)
    assert quick == full
    assert "\x1b" not in quick[1]


def test_rollout_sides_and_the_id_lookup_match(catalog: tuple[str, SecretaryRegistry]) -> None:
    url, registry = catalog
    inside, outside = _rollout_users(registry)
    sid = str(registry.get_secretary("alice").id)
    for args in (
        ["current", str(inside)],
        ["current", str(outside), "--json"],
        ["show", sid],
        ["versions", sid, "--json"],
    ):
        assert _run(url, args, typer_only=False) == _run(url, args, typer_only=True)
    code, out, _ = _run(url, ["current", str(inside), "--json"], typer_only=False)
    assert code == 0 and '"version_source": "rollout"' in out and '"version": 2' in out


def test_on_postgresql_too(pg_url: str) -> None:
    for url, registry in _seeded(pg_url):
        inside, _outside = _rollout_users(registry)
        for args in (
            ["list", "--all", "--json"],
            ["show", "carol"],
            ["current", "@ann", "--json"],
            ["current", "45", "--json"],
            ["current", str(inside), "--json"],
            ["current", "99"],
            ["versions", "alice", "--json"],
            ["users", "list", "--json", "--limit", "3"],
            ["history", "42", "--json"],
        ):
            assert _run(url, args, typer_only=False) == _run(url, args, typer_only=True), args
        assert _answered_quickly(url, ["current", str(inside), "--json"])


def test_no_default_is_the_registry_s_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nodefault.db'}"
    engine = make_engine(url)
    schema.upgrade(engine)
    registry = SecretaryRegistry(engine)
    registry.create_secretary(AssistantCreate(name="solo", model="echo", prompt="S."))
    registry.register_user(7, None)
    engine.dispose()
    for args in (["current", "7"], ["list", "--json"], ["list"]):
        quick, full = _run(url, args, typer_only=False), _run(url, args, typer_only=True)
        assert quick == full
    assert _run(url, ["current", "7"], typer_only=False)[0] == 1


def test_only_exact_quick_command_lines_are_taken() -> None:
    assert parse(["list"]) == Read({}, "list", [], set(), {})
    assert parse(["--database-url", "sqlite:///x.db", "show", "a", "--json"]) == Read(
        {"database_url": "sqlite:///x.db"}, "show", ["a"], {"--json"}, {}
    )
    assert parse(["--context-url=redis://h", "current", "@ann"]) is not None
    assert parse(["users", "list", "--limit=5", "--secretary", "a", "--json"]) == Read(
        {}, "users list", [], {"--json"}, {"--limit": "5", "--secretary": "a"}
    )
    for argv in (
        [],
        ["list", "--help"],
        ["--help"],
        ["--version"],
        ["show"],
        ["show", "a", "b"],
        ["list", "extra"],
        ["current", "42", "--all"],
        ["--database-url"],
        ["--database-url", "x", "--database-url", "y", "list"],
        ["users", "show"],
        ["users"],
        ["list", "-h"],
        ["users", "list", "--limit", "1", "--limit", "2"],
        ["users", "list", "--secretary", "--json"],
        ["history", "1", "--secretary", "a"],
        ["history", "1", "--json", "--json"],
    ):
        assert parse(argv) is None, argv


def _answered_quickly(url: str, args: list[str]) -> bool:
    """True when the quick path itself answered `args` (exit 0) loading nothing heavy."""
    probe = (
        "import sys\n"
        "from secretaries_cli import quick\n"
        f"assert quick.run({args!r}) == 0\n"
        "heavy = [m for m in ('typer', 'click', 'sqlalchemy.orm', 'sqlmodel', 'pydantic')"
        " if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    env = {**os.environ, "SECRETARIES_DATABASE_URL": url}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    return done.returncode == 0 and done.stdout.strip().endswith("HEAVY []")


def test_quick_reads_load_neither_typer_nor_the_orm(
    catalog: tuple[str, SecretaryRegistry],
) -> None:
    url, _registry = catalog
    assert _answered_quickly(url, ["current", "42", "--json"])
    assert _answered_quickly(url, ["list", "--all"])
    assert _answered_quickly(url, ["versions", "alice"])
    assert _answered_quickly(url, ["users", "list", "--secretary", "carol"])
    assert _answered_quickly(url, ["history", "@ann", "--json"])
    for listed in ("tools", "tokens", "providers"):
        assert _answered_quickly(url, [listed, "list"])
    assert _answered_quickly(url, ["diff", "alice", "1", "2", "--json"])
    assert _answered_quickly(url, ["tools", "show", "cal"])
    assert _answered_quickly(url, ["rollout", "status", "carol"])


def test_a_version_list_without_its_live_row_is_the_registry_s(tmp_path: Path) -> None:
    """A secretary made before versions existed has no live row: the quick read gives up,
    and the registry writes the row and answers (the next quick read then answers)."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    schema.upgrade(engine)
    registry = SecretaryRegistry(engine)
    registry.create_secretary(AssistantCreate(name="old", model="echo", prompt="O."))
    with engine.begin() as conn:
        conn.execute(reads.VERSION.delete())
    engine.dispose()
    assert not _answered_quickly(url, ["versions", "old", "--json"])
    first = _run(url, ["versions", "old", "--json"], typer_only=False)
    assert first[0] == 0 and '"state": "live"' in first[1]
    assert _answered_quickly(url, ["versions", "old", "--json"])
    assert _run(url, ["versions", "old", "--json"], typer_only=True) == first


def test_the_views_match_the_real_tables(catalog: tuple[str, SecretaryRegistry]) -> None:
    """Every column a quick read uses exists in the migrated schema, with the same type."""
    from sqlalchemy import inspect

    _url, registry = catalog
    inspector = inspect(registry.engine)
    from sqlmodel import SQLModel

    for view in reads.VIEWS:
        real = SQLModel.metadata.tables[view.name]
        live = {c["name"] for c in inspector.get_columns(view.name)}
        for column in view.columns:
            assert column.name in live, (view.name, column.name)
            ours, theirs = column.type._type_affinity, real.c[column.name].type._type_affinity
            assert ours is theirs, (view.name, column.name, ours, theirs)
