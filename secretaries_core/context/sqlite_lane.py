"""The embedded store's hot path (read a context, append a turn) on the stdlib driver itself.

Measured (bench.context_sql): through SQLAlchemy's Core a 100-message read cost 6x the same
SELECT on `sqlite3` (result processing per row and column), a turn's append 5x (pool
checkout, per-statement compilation lookups, one trim and one touch per message). Here the
statements are written once, in SQLite's own dialect, and run on private connections kept
by the lane — a SQLite file only: an in-memory database lives in the engine's single
connection, so it keeps the Core path. Values are written exactly as SQLAlchemy writes
them (see `stamp`), so both paths read each other's rows; purge, stats and listings stay
on Core, where their cost is the database's, not Python's.

An event loop calls the lane *without waiting* (`wait=False`): those connections have no
busy timeout and never checkpoint, so a call either runs at once — a WAL reader never
waits, a writer takes a free lock and commits without fsync under `synchronous=NORMAL` —
or raises `WouldWait`, and the caller repeats it on a thread with the normal busy timeout.
Hopping to a thread costs more CPU than the statements themselves (measured ~100-300 us
per hop on a 2-core machine against 15-200 us of SQL), so the hop is kept for the waits.
"""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from secretaries_core.context.base import ContextPolicy, Message, turn_id
from secretaries_core.errors import InvalidInput
from secretaries_core.plumbing.db import busy, sqlite_pragmas, unavailable

# How far back a redelivered update's turn is looked for (as the Core path does).
LOOK_BACK = 64


class WouldWait(Exception):
    """A no-wait call met a lock (or a WAL recovery): repeat it where waiting is fine."""


def usable(engine: Engine) -> bool:
    """True for an engine on a SQLite *file* (the lane opens its own connections to it)."""
    url = engine.url
    if engine.dialect.name != "sqlite" or engine.dialect.driver != "pysqlite":
        return False
    database = url.database or ""
    return database not in ("", ":memory:") and "mode=memory" not in str(url.query)


def stamp(at: datetime) -> str:
    """A datetime as `UTCDateTime` stores it on SQLite: naive UTC, always with microseconds."""
    if at.tzinfo is None:
        raise InvalidInput("naive datetimes are not stored; pass an aware UTC datetime")
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


Row = tuple[str, str, str, str | None]

# A user's context is read again on each of their messages, and decoding the same rows
# into the same messages (stamp, metadata, the object) cost more than the SELECT: each
# row read maps to the message it decoded to last time. Keyed by the whole row, so a
# reused row id can never hand back another message. Emptied when it outgrows the cap.
DECODED_CAP = 50_000


def _decode(row: Row) -> Message:
    role, content, at, meta = row
    metadata = json.loads(meta) if meta else None
    return Message(role, content, datetime.fromisoformat(at).replace(tzinfo=UTC), metadata)


def _rolled_back(conn: sqlite3.Connection) -> bool:
    """End a failed call's transaction; False when even that fails (drop the connection)."""
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        return False
    return True


class SqliteLane:
    """Reads and appends of the embedded store on pooled `sqlite3` connections of its own."""

    READ = (
        "SELECT m.role, m.content, m.created_at, m.meta FROM context_message AS m"
        " JOIN conversation_context AS c ON c.id = m.context_id"
        " WHERE c.user_id = ? AND c.secretary_id = ? AND c.expires_at > ?"
        " ORDER BY m.id DESC LIMIT ?"
    )
    FIND = (
        "SELECT id, expires_at, message_count FROM conversation_context"
        " WHERE user_id = ? AND secretary_id = ?"
    )
    SEEN = (
        "SELECT 1 FROM (SELECT meta FROM context_message WHERE context_id = ?"
        " ORDER BY id DESC LIMIT ?) WHERE CAST(json_extract(meta, ?) AS TEXT) = ? LIMIT 1"
    )
    NEW_CONTEXT = (
        "INSERT INTO conversation_context"
        " (user_id, secretary_id, last_activity, expires_at, message_count)"
        " VALUES (?, ?, ?, ?, 0)"
    )
    CLEAR = "DELETE FROM context_message WHERE context_id = ?"
    INSERT = (
        "INSERT INTO context_message (context_id, role, content, meta, created_at)"
        " VALUES (?, ?, ?, ?, ?)"
    )
    TRIM = (
        "DELETE FROM context_message WHERE context_id = ? AND id <= (SELECT id FROM"
        " context_message WHERE context_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)"
    )
    TOUCH = (
        "UPDATE conversation_context SET last_activity = ?, expires_at = ?, message_count = ?"
        " WHERE id = ?"
    )

    CHECKPOINT_EVERY = 100

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        cargs, cparams = engine.dialect.create_connect_args(engine.url)
        self._connect_args: tuple[list[Any], dict[str, Any]] = (
            list(cargs),
            {**cparams, "check_same_thread": False},
        )
        # Idle connections per mode (waiting or not); list.pop/append are atomic, so no
        # lock on the hot path.
        self._idle: dict[bool, list[sqlite3.Connection]] = {True: [], False: []}
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._closed = False
        self._writes = itertools.count(1)
        self._decoded: dict[Row, Message] = {}

    # -- connections ----------------------------------------------------------------------

    def _open(self, wait: bool) -> sqlite3.Connection:
        cargs, cparams = self._connect_args
        try:
            conn: sqlite3.Connection = sqlite3.connect(*cargs, **cparams)
            sqlite_pragmas(conn)
            if not wait:
                # Fail at once on a lock; leave checkpoints (fsync) to waiting connections.
                conn.execute("PRAGMA busy_timeout = 0")
                conn.execute("PRAGMA wal_autocheckpoint = 0")
        except sqlite3.Error as exc:
            raise unavailable(self.engine, exc) from exc
        return conn

    @contextmanager
    def _connection(self, wait: bool) -> Iterator[sqlite3.Connection]:
        if self._pid != os.getpid():
            # A forked child must not share its parent's connections.
            self._idle, self._pid = {True: [], False: []}, os.getpid()
        idle = self._idle[wait]
        try:
            conn = idle.pop()
        except IndexError:
            conn = self._open(wait)
        healthy = True
        try:
            yield conn
        except sqlite3.Error as exc:
            healthy = _rolled_back(conn)
            if isinstance(exc, sqlite3.IntegrityError):
                raise
            locked = "locked" in str(exc) or "busy" in str(exc)
            if locked and not wait:
                raise WouldWait(str(exc)) from exc
            healthy = False  # whatever else went wrong, this connection is not reused
            if locked:
                raise busy(self.engine) from exc
            raise unavailable(self.engine, exc) from exc
        except BaseException:
            healthy = _rolled_back(conn)
            raise
        finally:
            if healthy and not self._closed:
                idle.append(conn)
            else:
                conn.close()

    def may_write_inline(self) -> bool:
        """False on every `CHECKPOINT_EVERY`-th write: that one goes to a waiting connection,
        whose commit checkpoints the WAL once it is long (no-wait connections never do)."""
        return next(self._writes) % self.CHECKPOINT_EVERY != 0

    def close(self) -> None:
        """Close the idle connections (one in use closes when its call ends)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {True: [], False: []}
        for conn in [*idle[True], *idle[False]]:
            conn.close()

    # -- the two hot statements -------------------------------------------------------------

    def read(
        self,
        user_id: int,
        secretary_id: uuid.UUID,
        now: datetime,
        limit: int | None,
        *,
        wait: bool = True,
    ) -> list[Message]:
        """The last `limit` messages of a live context, oldest first."""
        params = (user_id, secretary_id.hex, stamp(now), -1 if limit is None else limit)
        with self._connection(wait) as conn:
            rows = conn.execute(self.READ, params).fetchall()
        rows.reverse()
        decoded = self._decoded
        if len(decoded) > DECODED_CAP:
            decoded.clear()
        out = []
        for row in rows:
            message = decoded.get(row)
            if message is None:
                message = decoded[row] = _decode(row)
            out.append(message)
        return out

    def append_turns(
        self,
        turns: Sequence[tuple[int, uuid.UUID, list[Message]]],
        rules: ContextPolicy,
        now: datetime,
        *,
        wait: bool = True,
    ) -> int:
        """Write each context's messages in one transaction; a turn already stored is skipped.

        Raises `sqlite3.IntegrityError` when another writer created one of the contexts at
        the same moment (the caller retries).
        """
        at = stamp(now)
        expires = stamp(now + rules.ttl)
        written = 0
        with self._connection(wait) as conn:
            conn.execute("BEGIN IMMEDIATE")
            for user_id, secretary_id, messages in turns:
                written += self._append(
                    conn, user_id, secretary_id.hex, messages, rules, at, expires
                )
            conn.execute("COMMIT")
        return written

    def _append(
        self,
        conn: sqlite3.Connection,
        user_id: int,
        secretary: str,
        messages: list[Message],
        rules: ContextPolicy,
        at: str,
        expires: str,
    ) -> int:
        row = conn.execute(self.FIND, (user_id, secretary)).fetchone()
        if row is None:
            context_id = conn.execute(self.NEW_CONTEXT, (user_id, secretary, at, at)).lastrowid
            count = 0
        else:
            context_id, old_expiry, count = row
            if old_expiry <= at:
                # Idle past its retention: it is gone even if purge has not run yet.
                conn.execute(self.CLEAR, (context_id,))
                count = 0
            elif self._stored(conn, context_id, messages):
                return 0  # this turn is already there: a retried write
        conn.executemany(
            self.INSERT,
            [
                (
                    context_id,
                    m.role,
                    m.content,
                    json.dumps(dict(m.metadata)) if m.metadata else None,
                    stamp(m.at),
                )
                for m in messages
            ],
        )
        count += len(messages)
        if count > rules.max_messages:
            conn.execute(self.TRIM, (context_id, context_id, rules.max_messages))
            count = rules.max_messages
        conn.execute(self.TOUCH, (at, expires, count, context_id))
        return len(messages)

    def _stored(self, conn: sqlite3.Connection, context_id: int, messages: list[Message]) -> bool:
        # Only a turn that may be sent again on purpose (a queued update delivered twice)
        # needs the look back: a transaction is written whole or not at all.
        turn = turn_id(messages)
        if turn is None or turn[0] != "update_id":
            return False
        key, value = turn
        found = conn.execute(self.SEEN, (context_id, LOOK_BACK, f"$.{key}", value)).fetchone()
        return found is not None
