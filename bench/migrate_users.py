"""`migrate-users` on N users vs one hand-written INSERT ... SELECT, on SQLite and PostgreSQL.

Run: python -m bench.migrate_users [--users N] [--batch-size N] [--backends sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import tracemalloc

from sqlalchemy import Engine, text

from bench.common import Row, database_urls, print_table, timed
from secretaries_core.catalog.linksql import SQLITE_UUID7_SQL
from secretaries_core.catalog.models import AssistantCreate
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine

# The same valid version-4 UUIDs the library generates.
UUID_SQL = {
    "postgresql": "gen_random_uuid()",
    "sqlite": SQLITE_UUID7_SQL,
}


def seed(engine: Engine, users: int) -> SecretaryRegistry:
    """A default secretary and `users` users with no links, inserted set-based."""
    registry = SecretaryRegistry(engine)
    registry.create_secretary(
        AssistantCreate(name="alice", model="echo", prompt="p", is_default=True)
    )
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(
                text(
                    "INSERT INTO telegramuser (telegram_id, created_at, updated_at)"
                    " SELECT g, now(), now() FROM generate_series(1, :n) g"
                ),
                {"n": users},
            )
        else:
            conn.execute(
                text(
                    "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < :n)"
                    " INSERT INTO telegramuser (telegram_id, created_at, updated_at)"
                    " SELECT i, datetime('now'), datetime('now') FROM g"
                ),
                {"n": users},
            )
    analyze(engine)
    return registry


def analyze(engine: Engine) -> None:
    """Fresh planner statistics, as autovacuum would have them on a live database.

    Without them PostgreSQL plans the anti-join against an "empty" link table as a
    nested loop over a sequential scan, which turns quadratic while the INSERT fills it.
    """
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE telegramuser"))
            conn.execute(text("ANALYZE usersecretarylink"))


def clear_links(engine: Engine) -> None:
    """Remove every link so the next contender starts from the same state."""
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM usersecretarylink"))
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE usersecretarylink"))


def hand_written(engine: Engine, secretary_id: str) -> None:
    """The floor: one INSERT ... SELECT for every user without an active link.

    The users already linked are read once, up front (a materialized CTE): with the
    anti-join written against the link table itself, PostgreSQL planned a nested loop
    that rescanned the table the statement was filling, and 1,000,000 users ran for
    minutes instead of seconds.
    """
    dialect = engine.dialect.name
    sec = secretary_id if dialect == "postgresql" else secretary_id.replace("-", "")
    with engine.begin() as conn:
        conn.execute(
            text(
                "WITH linked AS MATERIALIZED (SELECT user_id FROM usersecretarylink"
                " WHERE is_active)"
                " INSERT INTO usersecretarylink (id, user_id, secretary_id, is_active, created_at,"
                f" updated_at) SELECT {UUID_SQL[dialect]}, u.id, :sec, true, :now, :now"
                " FROM telegramuser u WHERE NOT EXISTS (SELECT 1 FROM linked l"
                " WHERE l.user_id = u.id)"
            ),
            {"sec": sec, "now": "2026-01-01 00:00:00"},
        )


def run(users: int, batch_size: int, backends: list[str]) -> list[Row]:
    """Measure each backend; returns the table rows."""
    rows: list[Row] = []
    with database_urls(backends) as urls:
        for backend, url in urls.items():
            engine = make_engine(url)
            schema.upgrade(engine)
            registry = seed(engine, users)
            sec_id = str(registry.get_secretary("alice").id)
            baseline = timed(lambda: hand_written(engine, sec_id))  # noqa: B023
            clear_links(engine)
            # Twice, best kept: the first run on a fresh table and later ones on a
            # table with freed pages behave differently; both contenders get both.
            baseline = min(baseline, timed(lambda: hand_written(engine, sec_id)))  # noqa: B023
            clear_links(engine)
            tracemalloc.start()
            ours = timed(lambda: registry.migrate_users(batch_size=batch_size))  # noqa: B023
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            result = registry.migrate_users(dry_run=True)
            assert result.migrated == 0, "migration left users behind"
            rows.append(
                Row(
                    f"{backend}: migrate-users {users:,} (peak {peak / 1e6:.1f} MB)",
                    ours,
                    baseline,
                    "one INSERT ... SELECT",
                )
            )
            engine.dispose()
    return rows


def main() -> None:
    """Parse arguments, run, print."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    rows = run(args.users, args.batch_size, args.backends.split(","))
    print_table(f"migrate-users, batch size {args.batch_size:,}", rows)


if __name__ == "__main__":
    main()
