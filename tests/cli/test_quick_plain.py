"""The commands whose bodies are in `secretaries_cli/plain.py` — `contexts
stats|show|purge`, `delete`, `users delete`, `tools call`, `usage`, `export`, `plan`,
`apply`, `chat`, `eval`, `replay` — print and store the same through the quick path (no
Typer, no pydantic; the message path on the serving catalog) and through the Typer app.

As in test_quick_writes: two copies of one seeded catalog with stored conversations take
the same command lines, one through the console script, one through the Typer app
alone; after every step the output, the exit code and every row of every table are
compared. The steps cover each success, each refusal and each usage error.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

from secretaries_cli.quick import parse
from tests.cli.test_quick_reads import _answered_quickly, _run
from tests.cli.test_quick_writes import _seed, _walk

# The message path through both: a reply, a new user, a username, hostile text, invalid
# Unicode (a surrogate: bytes that are not UTF-8 on the command line), refusals.
CHAT_STEPS = [
    ["chat", "45", "hello again"],
    ["chat", "43", "hi [b]there[/b]", "--json"],
    ["chat", "777", "a new user"],
    ["chat", "@pinned", "by name", "--approve"],
    ["chat", "@nobody", "hi"],
    ["chat", "0", "hi"],  # not a user: usage error
    ["chat", "45"],  # no message: usage error
    ["chat", "45", "caf\udce9"],
    ["chat", "45", "\x1b]52;c;aGk=\x07 hostile"],
    ["replay", "alice", "--users", "2", "--version", "1"],
    ["replay", "alice", "--users", "3", "--json"],
    ["replay", "carol", "--users", "0"],  # usage error
    ["replay", "nobody"],
    ["replay", "alice", "--version", "99"],
]


STEPS = [
    ["contexts", "stats"],
    ["contexts", "stats", "--json"],
    ["contexts", "show", "45"],
    ["contexts", "show", "@pinned", "--json", "--limit", "1", "--offset", "1"],
    ["contexts", "show", "42"],  # nothing stored
    ["contexts", "show", "43", "--secretary", "carol"],
    ["contexts", "show", "99"],  # no such user
    ["contexts", "show", "0"],  # not a user: usage error
    ["contexts", "show", "42", "--secretary", "nobody"],
    ["contexts", "show", "42", "--limit", "x"],
    ["contexts", "purge", "--older-than", "3x"],  # usage error
    ["contexts", "purge", "--user", "45", "--dry-run", "--json"],
    ["contexts", "purge", "--secretary", "nobody"],
    ["contexts", "purge", "--user", "43", "--secretary", "carol", "--json"],
    ["contexts", "purge", "--older-than", "30d"],
    ["usage"],
    ["usage", "--json", "--by-version"],
    ["usage", "--user", "45", "--since", "7d", "--limit", "1", "--offset", "0"],
    ["usage", "--secretary", "carol", "--by-version"],
    ["usage", "--secretary", "nobody"],
    ["usage", "--user", "99"],
    ["usage", "--since", "3x"],  # usage error
    ["delete", "bob"],  # no terminal, no --yes: refused, nothing deleted
    ["delete", "alice", "--yes"],  # the default
    ["delete", "carol", "--yes"],  # linked once: refused
    ["delete", "nobody", "--yes", "--json"],
    ["users", "delete", "42"],  # no --yes: refused
    ["users", "delete", "99", "--yes"],
    ["users", "delete", "@pinned", "--yes", "--json"],
    ["users", "delete", "100", "--yes"],
    ["users", "delete", "100", "--yes"],  # gone already
    ["users", "delete", "777", "--yes", "--json"],  # registered by its first chat
    ["tools", "call", "nope", "--args", "{}"],
    ["tools", "call", "cal", "--args", "[1]"],
    ["tools", "call", "cal", "--args", "{"],
    ["tools", "call", "cal", "--args", "{}"],  # nothing listens on port 9
    ["tools", "call", "cal"],  # --args is required: usage error
    ["contexts", "stats", "--json"],
    ["usage", "--json"],  # the erased users' usage folded into totals under no user
]


def _talked(url: str) -> None:
    """Stored conversations on the seeded catalog: two users, two secretaries."""
    # 43 talks to carol, 45 is pinned to alice's version 1 (the echo model; alice's
    # running rollout would put some users on the draft's model, which nothing serves).
    for user, said in (("45", "hello [red]"), ("43", "hi\x1b[2J"), ("45", "hey")):
        done = _run(url, ["chat", user, said], typer_only=True)
        assert done[0] == 0, done


def _catalog_steps(url: str, folder: Path) -> list[list[str]]:
    """export, plan and apply on files made from the seeded catalog's own export."""
    exported = _run(url, ["export"], typer_only=True)[1]
    hostile = folder / "exported.yaml"  # the seeded descriptions hold ESC: refused
    hostile.write_text(exported, encoding="utf-8")
    body = (
        "secretaries:\n"
        "- {name: alice, model: echo, default: true, prompt: 'Alice, again.'}\n"
        "- {name: carol, model: echo, prompt: 'Carol, changed by file.', description: ''}\n"
    )
    changed = folder / "changed.yaml"
    changed.write_text(body, encoding="utf-8")
    suites = folder / "suites.yaml"  # an eval suite: the Typer app runs it (not walked:
    # the eval it records is stamped, and the secretary it makes gets a new id)
    suites.write_text(body + "- {name: dave, model: echo, prompt: Dave., eval: s.yaml}\n")
    (folder / "s.yaml").write_text(
        "cases:\n- {name: hi, message: hi, expect: [{contains: Dave}]}\n"
    )
    pruning = folder / "pruning.yaml"  # without alice, the default: pruning is refused
    pruning.write_text("secretaries:\n- {name: erin, model: echo, prompt: E.}\n")
    suite = folder / "suite.yaml"
    suite.write_text(
        "cases:\n- {name: greets, message: hi, expect: [{contains: hi}]}\n"
        "- {name: fails, message: hey, expect: [{contains: nowhere}]}\n"
    )
    latin1 = folder / "latin1.yaml"
    latin1.write_bytes("secretaries: [{name: é}]".encode("latin-1"))
    return [
        ["eval", "carol", "--suite", str(suite), "--version", "1"],  # one case fails: exit 1
        ["eval", "carol", "--suite", str(suite), "--json", "--version", "1"],
        ["eval", "nobody", "--suite", str(suite)],
        ["eval", "carol", "--suite", str(folder / "missing.yaml")],  # usage error
        ["eval", "carol", "--suite", str(latin1)],
        ["export"],
        ["export", "--output", str(folder / "out.yaml")],
        ["plan", str(hostile)],
        ["plan", str(changed)],
        ["plan", str(changed), "--json", "--prune"],
        ["plan", str(pruning), "--prune"],
        ["plan", str(folder / "missing.yaml")],  # usage error
        ["plan", str(latin1)],
        ["apply", str(changed)],  # no terminal, no --yes: refused
        ["apply", str(changed), "--yes", "--canary", "101"],  # usage error
        ["apply", str(pruning), "--prune", "--yes"],  # refused: nothing applied
        ["apply", str(changed), "--yes", "--canary", "25"],
        ["apply", str(changed), "--yes", "--json"],  # nothing left to change
        ["export"],
    ]


def test_plain_commands_print_and_store_what_the_typer_app_does(tmp_path: Path) -> None:
    url = _seed(f"sqlite:///{tmp_path / 'a.db'}")
    _talked(url)
    shutil.copy(tmp_path / "a.db", tmp_path / "b.db")
    steps = [*CHAT_STEPS, *_catalog_steps(url, tmp_path), *STEPS]
    _walk(url, f"sqlite:///{tmp_path / 'b.db'}", steps)
    shown = _run(url, ["contexts", "stats", "--json"], typer_only=True)[1]
    assert '"contexts": 0' in shown  # the walk purged and erased every conversation


def test_the_message_path_on_postgresql_too(pg_admin_url: str, pg_url: str) -> None:
    """`chat` and `replay` on PostgreSQL: the serving catalog's resolution, registration
    and counts (its own SQL there) store what the registry's path stores."""
    _talked(_seed(pg_url))
    admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    copy = f"t_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            source = pg_url.rsplit("/", 1)[1]
            conn.execute(text(f'CREATE DATABASE "{copy}" TEMPLATE "{source}"'))
        copy_url = admin.url.set(database=copy).render_as_string(hide_password=False)
        _walk(pg_url, copy_url, [step for step in CHAT_STEPS if "\udce9" not in step[-1]])
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{copy}" WITH (FORCE)'))
        admin.dispose()


def test_plain_commands_load_neither_typer_nor_pydantic(tmp_path: Path) -> None:
    url = _seed(f"sqlite:///{tmp_path / 'p.db'}")
    _talked(url)
    for args in (
        ["contexts", "stats"],
        ["contexts", "show", "45", "--json"],
        ["contexts", "purge", "--user", "43", "--dry-run"],
        ["usage", "--by-version"],
        ["export"],
        ["users", "delete", "100", "--yes", "--json"],
        ["contexts", "purge", "--older-than", "1s"],
    ):
        assert _answered_quickly(url, args), args
    steps = _catalog_steps(url, tmp_path)
    changed, suites = tmp_path / "changed.yaml", tmp_path / "suites.yaml"
    assert steps and _answered_quickly(url, ["plan", str(changed), "--prune", "--json"])
    assert _answered_quickly(url, ["apply", str(changed), "--yes"])
    passing = tmp_path / "passing.yaml"
    passing.write_text("cases:\n- {name: greets, message: hi, expect: [{contains: hi}]}\n")
    for args in (
        ["chat", "45", "hello"],
        ["chat", "@pinned", "hello", "--json"],
        ["eval", "carol", "--suite", str(passing), "--version", "1", "--json"],
        ["replay", "alice", "--users", "2"],
    ):
        assert _answered_quickly(url, args), args
    assert not _answered_quickly(url, ["apply", str(suites), "--yes"])  # suites: Typer's
    made = [sys.executable, "-m", "secretaries_cli", "--database-url", url, "create", "temp"]
    subprocess.run([*made, "--model", "echo", "--prompt", "T"], check=True, capture_output=True)
    assert _answered_quickly(url, ["delete", "temp", "--yes"])


def test_confirmations_are_left_to_the_typer_app() -> None:
    assert parse(["users", "delete", "42", "--yes"]) is not None
    from secretaries_cli.quick import _plain_job

    for argv in (["users", "delete", "42"], ["delete", "bob"], ["tools", "call", "cal"]):
        read = parse(argv)
        assert read is not None
        try:
            _plain_job(read)
        except LookupError:
            continue
        raise AssertionError(f"{argv} was taken without confirmation or --args")
