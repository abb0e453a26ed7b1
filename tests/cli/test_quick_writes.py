"""The quick writes (`assign`, `pin`, `unpin`, `set-default`, `activate`, `deactivate`,
`rollback`, `rollout start|set|promote|abort` without Typer or the ORM) print and store
what the Typer app prints and stores.

Two copies of one seeded catalog — a file copy on SQLite, a template copy on PostgreSQL —
take the same sequence of command lines, one through the console script (quick path
first), the other through the Typer app alone. After every step stdout, stderr and the
exit code are compared byte for byte, and the whole database (every table, every row;
timestamps and new link ids masked) is compared too: successes, nothing-changed answers
and every refusal.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect, select, text

from secretaries_cli.quick import parse
from tests.cli.test_quick_reads import HOSTILE, _answered_quickly, _run, _seeded

STEPS = [
    ["assign", "44", "carol"],  # a first link
    ["assign", "44", "carol", "--json"],  # nothing changed
    ["assign", "@ANN", "alice", "--json"],  # from a deactivated secretary's link
    ["assign", "44", "bob"],  # inactive: refused
    ["assign", "99", "alice"],  # no such user
    ["assign", "0", "alice"],  # not a user: usage error
    ["assign", "44", "nobody", "--json"],
    ["pin", "44", "carol", "--version", "2"],  # a draft
    ["pin", "44", "carol", "--version=1"],  # replaces the pin
    ["pin", "44", "carol", "--version", "9"],  # no such version
    ["pin", "44", "carol", "--version", "x"],
    ["pin", "44", "carol"],  # --version is required
    ["pin", "@nobody", "carol", "--version", "1"],
    ["unpin", "44", "carol"],
    ["unpin", "44", "carol"],  # no pin left
    ["unpin", "44", "nobody"],
    ["set-default", "carol"],
    ["set-default", "carol", "--json"],  # nothing changed
    ["set-default", "bob"],  # inactive
    ["activate", "bob", "--json"],
    ["activate", "bob"],  # nothing changed
    ["deactivate", "carol"],  # the default: refused
    ["set-default", "alice"],
    ["deactivate", "carol", "--reassign-to", "bob"],  # moves 43 and 44
    ["deactivate", "carol", "--json"],  # nothing changed
    ["deactivate", "bob", "--reassign-to", "bob"],  # onto itself: refused
    ["deactivate", "bob", "--reassign-to", "carol"],  # onto an inactive one: refused
    ["deactivate", "nobody"],
    ["activate", "nobody", "--json"],
    ["activate", "carol", "--json"],
    # Rollouts and rollback (alice's rollout is running at 50%; carol's ended).
    ["rollout", "set", "alice", "--percent", "80"],
    ["rollout", "set", "alice", "--percent", "101"],  # a usage error
    ["rollout", "set", "carol", "--percent", "10", "--json"],  # none running
    ["rollout", "abort", "alice", "--json"],
    ["rollout", "abort", "alice"],  # none running
    ["rollout", "start", "alice", "--percent", "20", "--max-error-rate", "0.5", "--min-messages=3"],
    ["rollout", "start", "alice", "--percent", "20"],  # already running
    ["rollout", "promote", "alice", "--json"],
    ["rollout", "promote", "alice"],  # none running
    ["rollout", "start", "carol", "--percent", "10", "--version", "1"],  # already live
    ["rollout", "start", "carol", "--percent", "10", "--max-error-rate", "2"],
    ["rollout", "start", "carol", "--percent", "10", "--min-messages", "0"],
    ["rollout", "start", "carol", "--percent", "10", "--max-error-rate", "1e-1"],  # Typer's
    ["rollout", "start", "bob", "--percent", "10"],  # no draft
    ["rollback", "alice", "--to", "1"],  # ends nothing: promoted already
    ["rollback", "carol", "--to", "1", "--json"],  # ends carol's rollout
    ["rollback", "alice", "--to", "99"],
    ["rollback", "nobody", "--to", "1"],
    ["rollback", "alice", "--to", "x"],
]


def _seed(url: str) -> str:
    """`url` holding the catalog the quick reads are compared on (engine closed again)."""
    for _done in _seeded(url):
        pass
    return url


def _dump(url: str) -> dict[str, list[str]]:
    """Every row of every table, sorted, with what differs by nature masked."""
    engine = create_engine(url)
    try:
        names = inspect(engine).get_table_names()
        out: dict[str, list[str]] = {}
        with engine.connect() as conn:
            for name in names:
                rows = conn.execute(text(f'SELECT * FROM "{name}"')).mappings().all()
                out[name] = sorted(repr(_masked(name, dict(row))) for row in rows)
        return out
    finally:
        engine.dispose()


def _masked(table: str, row: dict[str, Any]) -> dict[str, Any]:
    for key in row:
        made_here = table in ("usersecretarylink", "rollout") and key == "id"
        if key.endswith("_at") or key == "at" or made_here:
            row[key] = "~"
    if table == "version_count" and len(row["period"]) == 32:
        row["period"] = "~"  # a rollout's id
    if table == "conversation_context":
        row["last_activity"] = "~"
    if table == "context_message" and row.get("meta"):
        meta = row["meta"] if isinstance(row["meta"], dict) else json.loads(row["meta"])
        row["meta"] = {k: "~" if k in ("turn", "t") else v for k, v in meta.items()}
    return row


def _stamps_masked(done: tuple[int, str, str]) -> tuple[int, str, str]:
    """A run's output with the times a write stamps (two runs, two clocks) masked."""
    code, out, err = done
    return code, STAMP.sub("~", out), err


STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)?")


# On PostgreSQL (row locks, its own errors): each write and a refusal of most, in order.
PG_STEPS = [
    ["assign", "44", "carol"],
    ["assign", "44", "carol", "--json"],
    ["assign", "44", "bob"],
    ["assign", "99", "alice"],
    ["pin", "44", "carol", "--version", "2"],
    ["pin", "44", "carol", "--version", "9"],
    ["unpin", "44", "carol"],
    ["set-default", "carol", "--json"],
    ["activate", "bob"],
    ["deactivate", "carol"],
    ["set-default", "alice"],
    ["deactivate", "carol", "--reassign-to", "bob"],
    ["rollout", "set", "alice", "--percent", "80"],
    ["rollout", "abort", "alice", "--json"],
    ["rollout", "start", "alice", "--percent", "20", "--max-error-rate", "0.5"],
    ["rollout", "start", "alice", "--percent", "20"],
    ["rollout", "promote", "alice"],
    ["rollback", "carol", "--to", "1", "--json"],
    ["rollback", "alice", "--to", "99"],
]


def _walk(quick_url: str, typer_url: str, steps: list[list[str]] = STEPS) -> None:
    for args in steps:
        quick = _stamps_masked(_run(quick_url, args, typer_only=False))
        full = _stamps_masked(_run(typer_url, args, typer_only=True))
        assert quick == full, args
        assert "Traceback" not in quick[2], args
        assert _dump(quick_url) == _dump(typer_url), args


def test_quick_writes_print_and_store_what_the_typer_app_does(tmp_path: Path) -> None:
    _seed(f"sqlite:///{tmp_path / 'a.db'}")
    shutil.copy(tmp_path / "a.db", tmp_path / "b.db")
    _walk(f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}")
    # What the walk did, checked once in plain words.
    quick = _run(f"sqlite:///{tmp_path / 'a.db'}", ["history", "44", "--json"], typer_only=True)
    assert quick[1].count('"secretary": "bob"') == 1 and '"is_active": true' in quick[1]
    assert HOSTILE  # the seeded catalog's hostile text is on every table the walk prints


def test_on_postgresql_too(pg_admin_url: str, pg_url: str) -> None:
    _seed(pg_url)
    admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    copy = f"t_{uuid.uuid4().hex[:12]}"
    source = pg_url.rsplit("/", 1)[1]
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{copy}" TEMPLATE "{source}"'))
        copy_url = admin.url.set(database=copy).render_as_string(hide_password=False)
        _walk(pg_url, copy_url, PG_STEPS)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{copy}" WITH (FORCE)'))
        admin.dispose()


def test_quick_writes_load_neither_typer_nor_the_orm(tmp_path: Path) -> None:
    url = _seed(f"sqlite:///{tmp_path / 'w.db'}")
    for args in (
        ["assign", "44", "carol"],
        ["pin", "44", "carol", "--version", "2"],
        ["unpin", "44", "carol"],
        ["set-default", "carol", "--json"],
        ["activate", "bob"],
        ["set-default", "alice"],
        ["deactivate", "carol", "--reassign-to", "bob", "--json"],
        ["rollout", "set", "alice", "--percent", "60"],
        ["rollout", "abort", "alice", "--json"],
        ["rollout", "start", "alice", "--percent", "5", "--max-dislike-rate", ".5"],
        ["rollout", "promote", "alice"],
        ["rollback", "carol", "--to", "1"],
    ):
        assert _answered_quickly(url, args), args
    engine = create_engine(url)
    with engine.connect() as conn:
        from secretaries_core.catalog import reads

        active = conn.execute(
            select(reads.LINK.c.user_id).where(reads.LINK.c.is_active)
            .join(reads.SECRETARY, reads.SECRETARY.c.id == reads.LINK.c.secretary_id)
            .where(reads.SECRETARY.c.name == "bob")
        ).all()  # fmt: skip
    engine.dispose()
    assert len(active) == 3  # 42 kept its link to bob while bob was inactive; 43 and 44 moved


def test_only_exact_write_lines_are_taken() -> None:
    assert parse(["pin", "1", "alice", "--version", "2"]) is not None
    for argv in (
        ["assign", "1"],
        ["assign", "1", "alice", "bob"],
        ["pin", "1", "alice", "--version"],
        ["deactivate", "bob", "--reassign-to"],
        ["activate", "bob", "--yes"],
        ["set-default", "--help"],
    ):
        assert parse(argv) is None, argv
