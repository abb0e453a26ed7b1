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
or raises `WouldWait`, and the caller waits on the loop (asyncio.sleep) and tries again,
or after a while repeats it on a thread with the normal busy timeout. Hopping to a thread
costs more CPU than the statements themselves (measured ~100-300 us per hop on a 2-core
machine against 15-200 us of SQL); and a write on a thread holds the lock while it waits
for the GIL, so under load every write on the loop met it locked and hopped too. Every
`CHECKPOINT_EVERY` such commits a checkpoint runs on a thread (see `checkpoint`).
"""

from __future__ import annotations

import itertools
import json
import operator
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
from secretaries_core.context.fences import FENCE_SQL_CHECK, Fenced, fence_ids
from secretaries_core.context.memory import RememberedContexts
from secretaries_core.errors import InvalidInput
from secretaries_core.plumbing.db import busy, sqlite_pragmas, unavailable
from secretaries_core.plumbing.memo import each_once

# How far back a redelivered update's turn is looked for (as the Core path does).
LOOK_BACK = 64
_UPDATE_KEY = operator.attrgetter("update_key")


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


Version = tuple[int, int, str, int | None]


class ContextMemo(RememberedContexts[tuple[int, str], Version]):
    """The contexts this process read or wrote last, each with the version it was at.

    A read asks the database for the context's version (one indexed row) and returns the
    remembered messages when it is unchanged: a 100-message context is not fetched and
    decoded again on each of its user's messages. Any write anywhere (another process, a
    purge) changes the version or removes the row, so a stale entry is never returned.
    """

    def get(self, key: tuple[int, str], version: Any) -> list[Message] | None:
        """The messages remembered for `key` at exactly `version` (a copy), else None."""
        entry = self.entry(key)
        if entry is None or entry[0] != tuple(version):
            return None
        return list(entry[1])

    def knows(self, key: tuple[int, str]) -> bool:
        """True when some version of `key` is remembered."""
        return key in self

    def put(self, key: tuple[int, str], version: Any, messages: list[Message]) -> None:
        """Remember `messages` as the whole of `key` at `version`."""
        super().put(key, tuple(version), list(messages))


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

    # A context's version: its row, its count, its last write and its newest message id.
    # Every append changes the last two (ids only grow while a context lives), a purge or
    # a clear removes the row: equal versions mean equal messages (see ContextMemo).
    VERSION = (
        "SELECT c.id, c.message_count, c.last_activity,"
        " (SELECT max(m.id) FROM context_message AS m WHERE m.context_id = c.id)"
        " FROM conversation_context AS c"
        " WHERE c.user_id = ? AND c.secretary_id = ? AND c.expires_at > ?"
    )
    # The messages with the version, in one statement (one snapshot): the newest message
    # comes first, so its id is the version's last part.
    READ = (
        "SELECT m.role, m.content, m.created_at, m.meta, m.id, c.id, c.message_count,"
        " c.last_activity FROM context_message AS m"
        " JOIN conversation_context AS c ON c.id = m.context_id"
        " WHERE c.user_id = ? AND c.secretary_id = ? AND c.expires_at > ?"
        " ORDER BY m.id DESC"
    )
    FIND = (
        "SELECT c.id, c.expires_at, c.message_count, c.last_activity,"
        " (SELECT max(m.id) FROM context_message AS m WHERE m.context_id = c.id)"
        " FROM conversation_context AS c WHERE c.user_id = ? AND c.secretary_id = ?"
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
        "INSERT INTO context_message (context_id, role, content, created_at, meta)"
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
        self.memo = ContextMemo()

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

    def committed_inline(self) -> bool:
        """Count a no-wait commit; True on every `CHECKPOINT_EVERY`-th (no-wait connections
        never checkpoint: it is then time for `checkpoint`, on a thread)."""
        return next(self._writes) % self.CHECKPOINT_EVERY == 0

    def checkpoint(self) -> None:
        """Copy the WAL into the database (PASSIVE: no lock taken, nobody waited for). It
        fsyncs, so it runs on a thread, and the loop's writers pause for it (see
        SqlContextStore): a checkpoint that writers overtake never catches up with the
        WAL, and then the WAL is never started afresh."""
        with self._connection(True) as conn:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

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
        """The last `limit` messages of a live context, oldest first.

        One small query when this process knows the context at its current version (it
        read or wrote it last); otherwise the version and the messages in one snapshot.
        """
        key = (user_id, secretary_id.hex)
        params = (*key, stamp(now))
        messages = None
        with self._connection(wait) as conn:
            if self.memo.knows(key):
                version = conn.execute(self.VERSION, params).fetchone()
                if version is None:  # cleared, purged or expired since
                    self.memo.forget(key)
                    return []
                messages = self.memo.get(key, version)
            if messages is None:
                rows = conn.execute(self.READ, params).fetchall()
        if messages is None:
            if not rows:
                self.memo.forget(key)
                return []
            newest = rows[0]
            rows.reverse()
            messages = self._messages([row[:4] for row in rows])
            self.memo.put(key, (newest[5], newest[6], newest[7], newest[4]), messages)
        return messages[-limit:] if limit is not None and limit < len(messages) else messages

    def _messages(self, rows: list[Row]) -> list[Message]:
        return each_once(self._decoded, rows, _decode, DECODED_CAP)

    def append_turns(
        self,
        turns: Sequence[tuple[int, uuid.UUID, list[Message]]],
        rules: ContextPolicy,
        now: datetime,
        *,
        wait: bool = True,
        since: float | None = None,
    ) -> int:
        """Write each context's messages in one transaction; a turn already stored is skipped.

        Raises `sqlite3.IntegrityError` when another writer created one of the contexts at
        the same moment (the caller retries), `Fenced` when `since` is older than a fence of
        one of the contexts (checked inside the write transaction: see fences.py).
        """
        at = stamp(now)
        expires = stamp(now + rules.ttl)
        written = 0
        known: list[tuple[tuple[int, str], Version, list[Message]] | None] = []
        with self._connection(wait) as conn:
            conn.execute("BEGIN IMMEDIATE")
            if since is not None:
                for user_id, secretary_id, _messages in turns:
                    newest = conn.execute(FENCE_SQL_CHECK, fence_ids(user_id, secretary_id))
                    found = newest.fetchone()[0]
                    if found is not None and float(found) >= since:
                        raise Fenced("the conversation was cleared or its user erased meanwhile")
            for user_id, secretary_id, messages in turns:
                wrote, after = self._append(
                    conn, (user_id, secretary_id.hex), messages, rules, at, expires
                )
                written += wrote
                known.append(after)
            conn.execute("COMMIT")
        # Only once committed: what this process now knows each context holds.
        for after in known:
            if after is not None:
                self.memo.put(*after)
        return written

    def _append(
        self,
        conn: sqlite3.Connection,
        key: tuple[int, str],
        messages: list[Message],
        rules: ContextPolicy,
        at: str,
        expires: str,
    ) -> tuple[int, tuple[tuple[int, str], Version, list[Message]] | None]:
        """Write one context's messages; returns how many, and what the context then holds
        when this process knew all of it before (else None)."""
        row = conn.execute(self.FIND, key).fetchone()
        before: list[Message] | None
        if row is None:
            context_id = int(conn.execute(self.NEW_CONTEXT, (*key, at, at)).lastrowid or 0)
            count, before = 0, []
        else:
            context_id, old_expiry, count, last_activity, newest = row
            before = self.memo.get(key, (context_id, count, last_activity, newest))
            if old_expiry <= at:
                # Idle past its retention: it is gone even if purge has not run yet.
                conn.execute(self.CLEAR, (context_id,))
                count, before = 0, []
            elif self._stored(conn, context_id, messages, before):
                return 0, None  # this turn is already there: a retried write
        rows: list[Row] = []
        last_id = 0
        for m in messages:
            row_values = (
                m.role,
                m.content,
                stamp(m.at),
                json.dumps(dict(m.metadata)) if m.metadata else None,
            )
            last_id = conn.execute(self.INSERT, (context_id, *row_values)).lastrowid or 0
            rows.append(row_values)
        count += len(messages)
        trimmed = count > rules.max_messages
        if trimmed:
            conn.execute(self.TRIM, (context_id, context_id, rules.max_messages))
            count = rules.max_messages
        conn.execute(self.TOUCH, (at, expires, count, context_id))
        if before is None:
            return len(messages), None
        # The rows as a read would decode them: the context is what it was plus these.
        after = before + self._messages(rows)
        if trimmed:
            after = after[-rules.max_messages :]
        return len(messages), (key, (context_id, count, at, last_id), after)

    def _stored(
        self,
        conn: sqlite3.Connection,
        context_id: int,
        messages: list[Message],
        known: list[Message] | None,
    ) -> bool:
        # Only a turn that may be sent again on purpose (a queued update delivered twice)
        # needs the look back: a transaction is written whole or not at all.
        turn = turn_id(messages)
        if turn is None or turn[0] != "update_id":
            return False
        key, value = turn  # key: "update_id", the one a message keeps as `update_key`
        if known is not None:
            # The context as of this transaction's version (checked by FIND above): the
            # same look back over the same rows, without parsing their JSON in SQL again.
            return value in map(_UPDATE_KEY, known[-LOOK_BACK:])
        found = conn.execute(self.SEEN, (context_id, LOOK_BACK, f"$.{key}", value)).fetchone()
        return found is not None
