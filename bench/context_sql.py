"""Embedded context store vs raw SQL on SQLite: append, read, and purge of 10% stale contexts.

Run: python -m bench.context_sql [--ops 3000] [--contexts 200000]
"""

from __future__ import annotations

import argparse
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory

from sqlalchemy import Engine, text

from bench.common import Row, print_table, timed
from secretaries_core.context import ContextPolicy, Message, SqlContextStore
from secretaries_core.context.sqlite_lane import SqliteLane
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine

SEC = uuid.UUID(int=7)
POLICY = ContextPolicy(timedelta(days=7), 100)


def raw_append(raw: object, user: int, content: str) -> None:
    """The floor: a turn (two messages) by the same statements, by hand, on the driver."""
    cur = raw.cursor()  # type: ignore[attr-defined]
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    cur.execute("BEGIN IMMEDIATE")
    cur.execute(
        "SELECT id, expires_at, message_count FROM conversation_context"
        " WHERE user_id = ? AND secretary_id = ?",
        (user, SEC.hex),
    )
    row = cur.fetchone()
    if row is None:
        cur.execute(
            "INSERT INTO conversation_context (user_id, secretary_id, last_activity,"
            " expires_at, message_count) VALUES (?, ?, ?, ?, 0)",
            (user, SEC.hex, now, now),
        )
        context_id, count = cur.lastrowid, 0
    else:
        context_id, _expiry, count = row
    cur.executemany(
        "INSERT INTO context_message (context_id, role, content, meta, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        [
            (context_id, "user", content, '{"turn": "t"}', now),
            (context_id, "assistant", content, '{"version": 1}', now),
        ],
    )
    cur.execute(
        "UPDATE conversation_context SET last_activity = ?, expires_at = ?,"
        " message_count = ? WHERE id = ?",
        (now, now, count + 2, context_id),
    )
    cur.execute("COMMIT")


def raw_read(raw: object, user: int) -> list[tuple[object, ...]]:
    """The floor: the same join, by hand, rows fetched as the driver gives them."""
    cur = raw.cursor()  # type: ignore[attr-defined]
    cur.execute(
        "SELECT m.role, m.content, m.created_at, m.meta FROM context_message m"
        " JOIN conversation_context c ON c.id = m.context_id"
        " WHERE c.user_id = ? AND c.secretary_id = ? AND c.expires_at > ?"
        " ORDER BY m.id DESC LIMIT ?",
        (user, SEC.hex, "2000-01-01 00:00:00.000000", -1),
    )
    return cur.fetchall()


def _turn(user: int, content: str, at: datetime) -> list[tuple[int, uuid.UUID, Message]]:
    return [
        (user, SEC, Message("user", content, at, {"turn": "t"})),
        (user, SEC, Message("assistant", content, at, {"version": 1})),
    ]


def seed(engine: Engine, contexts: int) -> None:
    """`contexts` contexts with one message each, every 10th idle for 3 days."""
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM context_message"))
        conn.execute(text("DELETE FROM conversation_context"))
        conn.execute(
            text(
                "WITH RECURSIVE g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i < :n - 1)"
                " INSERT INTO conversation_context (id, user_id, secretary_id, last_activity,"
                " expires_at, message_count) SELECT i + 1, i, :sec,"
                " CASE WHEN i % 10 = 0 THEN datetime('now', '-3 days') ELSE datetime('now') END,"
                " datetime('now', '+4 days'), 1 FROM g"
            ),
            {"n": contexts, "sec": SEC.hex},
        )
        conn.execute(
            text(
                "INSERT INTO context_message (context_id, role, content, created_at)"
                " SELECT id, 'user', 'hello', last_activity FROM conversation_context"
            )
        )


def run(ops: int, contexts: int) -> list[Row]:
    """Append, read and purge rows."""
    with TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'ctx.db'}")
        schema.upgrade(engine)
        store = SqlContextStore(engine, POLICY)
        raw = engine.raw_connection()
        raw.isolation_level = None  # type: ignore[attr-defined]
        at = datetime.now(UTC)
        line = "a message of a realistic length in a chat, " * 3
        ours_append = timed(
            lambda: [store.append_many(_turn(i % 200, line, at)) for i in range(ops)]
        )
        base_append = timed(lambda: [raw_append(raw, 1000 + i % 200, line) for i in range(ops)])
        rows = [
            Row(
                f"embedded append of a turn x{ops:,}",
                ours_append / ops,
                base_append / ops,
                "same statements by hand (sqlite3)",
            )
        ]
        for size in (2, 100):
            # Users 5000+: contexts of exactly `size` messages (the cap is 100).
            for user in range(20):
                for _ in range(size // 2):
                    store.append_many(_turn(5000 + size * 100 + user, line, at))
            first = 5000 + size * 100
            ours_read = timed(lambda f=first: [store.read(f + i % 20, SEC) for i in range(ops)])
            base_read = timed(lambda f=first: [raw_read(raw, f + i % 20) for i in range(ops)])
            rows.append(
                Row(
                    f"embedded read, {size} messages x{ops:,}",
                    ours_read / ops,
                    base_read / ops,
                    "same join by hand (sqlite3)",
                )
            )

            def unknown(f: int = first, lane: SqliteLane | None = store._lane) -> None:
                # As if another process had written each context since: nothing remembered.
                assert lane is not None
                for i in range(ops):
                    lane.memo.clear()
                    store.read(f + i % 20, SEC)

            rows.append(
                Row(
                    f"embedded read, {size} messages, not remembered x{ops:,}",
                    timed(unknown) / ops,
                    base_read / ops,
                    "same join by hand (sqlite3)",
                )
            )
        raw.close()
        seed(engine, contexts)
        ours = timed(lambda: store.purge(older_than=timedelta(days=1)))
        seed(engine, contexts)

        def one_delete() -> None:
            with engine.begin() as conn:
                conn.execute(
                    text(
                        "DELETE FROM conversation_context"
                        " WHERE last_activity < datetime('now', '-1 day')"
                    )
                )

        base = timed(one_delete)
        rows.append(
            Row(
                f"embedded purge {contexts // 10:,} stale of {contexts:,}",
                ours,
                base,
                "one hand-written DELETE (cascade)",
            )
        )
        engine.dispose()
    return rows


def main() -> None:
    """Parse arguments, run, print."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ops", type=int, default=3000)
    parser.add_argument("--contexts", type=int, default=200_000)
    args = parser.parse_args()
    print_table("Embedded context store (SQLite)", run(args.ops, args.contexts))


if __name__ == "__main__":
    main()
