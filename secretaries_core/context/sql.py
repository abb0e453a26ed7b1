"""The embedded context store: two tables in the configured database (SQLite or PostgreSQL)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from datetime import datetime, timedelta
from itertools import groupby

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from secretaries_core.context.base import (
    ContextPolicy,
    ContextStats,
    ContextStore,
    ContextSummary,
    Message,
    ProgressCallback,
    turn_id,
)
from secretaries_core.context.fences import (
    FENCE_TABLE,
    FENCE_TTL_S,
    Fenced,
    context_digest,
    fence_ids,
    pg_lock_key,
    user_digest,
)
from secretaries_core.context.sql_tables import CONTEXT_TABLE as CTX
from secretaries_core.context.sql_tables import MESSAGE_TABLE as MSG
from secretaries_core.context.sqlite_lane import SqliteLane, WouldWait, usable
from secretaries_core.errors import Conflict
from secretaries_core.plumbing.db import connected, transaction
from secretaries_core.plumbing.timeutil import UTCDateTime, utcnow

APPEND_ATTEMPTS = 5
# How long a write on the loop waits out SQLite's lock there before a thread takes over.
LOOP_LOCK_WAIT_S = 0.25
log = logging.getLogger(__name__)


class SqlContextStore(ContextStore):
    """Contexts in `conversation_context` / `context_message`, on any supported database.

    Expiry is a column: reads ignore expired contexts, the next append to an expired one
    starts it afresh, and `purge` deletes them set-wise, one DELETE per table per batch.
    """

    def __init__(
        self,
        engine: Engine,
        policy: ContextPolicy,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.policy = policy
        self.clock = clock
        self._sql = _Statements(engine.dialect.name == "postgresql")
        # A SQLite file: reads and appends go straight to the driver (see sqlite_lane).
        self._lane = SqliteLane(engine) if usable(engine) else None
        self._checkpointing: Future[None] | None = None

    # -- writes ---------------------------------------------------------------------------

    def append(
        self,
        user_id: int,
        secretary_id: uuid.UUID,
        message: Message,
        *,
        policy: ContextPolicy | None = None,
    ) -> None:
        """Add a message in one transaction: upsert the context row, insert, trim to the cap."""
        self.append_many([(user_id, secretary_id, message)], policy=policy)

    def append_many(
        self,
        items: Iterable[tuple[int, uuid.UUID, Message]],
        *,
        policy: ContextPolicy | None = None,
    ) -> int:
        """Append many messages, all in one transaction."""
        return self._append_batch(list(items), policy or self.policy, None)

    def append_since(
        self,
        items: list[tuple[int, uuid.UUID, Message]],
        since: float,
        *,
        policy: ContextPolicy | None = None,
    ) -> int:
        """`append_many`, refused with `Fenced` (checked in the same transaction) for a turn
        that began before a fence of one of the contexts."""
        return self._append_batch(list(items), policy or self.policy, since)

    def _append_batch(
        self,
        batch: list[tuple[int, uuid.UUID, Message]],
        rules: ContextPolicy,
        since: float | None,
    ) -> int:
        lane = self._lane
        for attempt in range(APPEND_ATTEMPTS):
            try:
                if lane is not None:
                    return lane.append_turns(_turns(batch), rules, self.clock(), since=since)
                with transaction(self.engine, write=True) as conn:
                    if since is not None:
                        self._check_fences(conn, batch, since)
                    self._lock_contexts(conn, batch)
                    written = 0
                    for (user_id, secretary_id), messages in _by_context(batch):
                        if self._stored(conn, user_id, secretary_id, messages):
                            continue  # this turn is already there: a retried write
                        for message in messages:
                            self._append(conn, user_id, secretary_id, message, rules)
                        written += len(messages)
                return written
            except (IntegrityError, sqlite3.IntegrityError):
                # Two writers created the same new context at once; the loser retries.
                time.sleep(0.005 * (attempt + 1))
        raise Conflict("the context changed concurrently; try again")

    def _check_fences(
        self, conn: Connection, batch: list[tuple[int, uuid.UUID, Message]], since: float
    ) -> None:
        """`Fenced` when a context of `batch` was cleared, or its user erased, after `since`.

        On PostgreSQL the user's advisory lock is taken shared: a fence (taken exclusive)
        either commits before this check sees it, or waits for this write to commit and
        then deletes what it wrote."""
        for user_id, secretary_id in {(u, s) for u, s, _m in batch}:
            if self._sql.postgres:
                conn.execute(
                    text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": pg_lock_key(user_id)}
                )
            ids = fence_ids(user_id, secretary_id)
            newest = conn.execute(
                select(func.max(FENCE_TABLE.c.fenced_at)).where(FENCE_TABLE.c.id.in_(ids))
            ).scalar_one()
            if newest is not None and float(newest) >= since:
                raise Fenced("the conversation was cleared or its user erased meanwhile")

    def fence(self, user_id: int, secretary_id: uuid.UUID | None = None) -> None:
        """Refuse from now on the writes of turns that began before (see fences.py): of
        every context of the user, or of one context. Fences older than a day are pruned."""
        fid = (
            user_digest(user_id) if secretary_id is None else context_digest(user_id, secretary_id)
        )
        now = self.clock().timestamp()
        with transaction(self.engine, write=True) as conn:
            if self._sql.postgres:
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": pg_lock_key(user_id)})
            conn.execute(delete(FENCE_TABLE).where(FENCE_TABLE.c.fenced_at < now - FENCE_TTL_S))
            conn.execute(delete(FENCE_TABLE).where(FENCE_TABLE.c.id == fid))
            conn.execute(FENCE_TABLE.insert().values(id=fid, fenced_at=now))
        if self._lane is not None:
            self._lane.memo.clear()

    def _lock_contexts(self, conn: Connection, batch: list[tuple[int, uuid.UUID, Message]]) -> None:
        """On PostgreSQL, hold each context's write lock (in key order: no deadlock) before
        the turn guard looks: two writers of one update then take turns, and the second
        sees the first's committed turn. Without it, a turn committed between the guard's
        look and the row lock was written twice (seen under load)."""
        if not self._sql.postgres:
            return  # SQLite writes one transaction at a time
        for key in sorted({context_lock_key(u, s) for u, s, _m in batch}):
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})

    def _stored(
        self, conn: Connection, user_id: int, secretary_id: uuid.UUID, messages: list[Message]
    ) -> bool:
        """True when the turn `messages` carry (see `turn_id`) is among the newest stored."""
        turn = turn_id(messages)
        # A transaction is written whole or not at all, so only a turn that may be sent
        # again on purpose (a queued update delivered twice) needs the look back.
        if turn is None or turn[0] != "update_id":
            return False
        key, value = turn
        rows = conn.execute(
            self._sql.recent_meta, {"u": user_id, "s": secretary_id, "lim": 64}
        ).all()
        return any(meta and str(meta.get(key)) == value for (meta,) in rows)

    def _append(
        self,
        conn: Connection,
        user_id: int,
        secretary_id: uuid.UUID,
        message: Message,
        rules: ContextPolicy,
    ) -> None:
        sql = self._sql
        now = self.clock()
        pair = {"u": user_id, "s": secretary_id}
        row = conn.execute(sql.find, pair).one_or_none()
        if row is None:
            context_id = conn.execute(sql.insert_context, {**pair, "now": now}).scalar_one()
            count = 0
        else:
            context_id, old_expiry, count = row
            if old_expiry <= now:
                # Idle past its retention: it is gone even if purge has not run yet.
                conn.execute(sql.clear_messages, {"c": context_id})
                count = 0
        conn.execute(
            sql.insert_message,
            {
                "c": context_id,
                "role": message.role,
                "content": message.content,
                "meta": dict(message.metadata) if message.metadata else None,
                "at": message.at,
            },
        )
        count += 1
        if count > rules.max_messages:
            conn.execute(sql.trim, {"c": context_id, "keep": rules.max_messages})
            count = rules.max_messages
        conn.execute(sql.touch, {"c": context_id, "now": now, "exp": now + rules.ttl, "n": count})

    def close(self) -> None:
        """Close the lane's connections (the engine is the owner's) and the thread pool."""
        if self._lane is not None:
            self._lane.close()
        super().close()

    def clear(self, user_id: int, secretary_id: uuid.UUID) -> bool:
        """Delete one context and its messages (fenced first: see fences.py)."""
        return self.purge(user_id=user_id, secretary_id=secretary_id) > 0

    # -- reads ----------------------------------------------------------------------------

    def read(
        self, user_id: int, secretary_id: uuid.UUID, limit: int | None = None
    ) -> list[Message]:
        """The last `limit` messages of a live context, oldest first, in one query."""
        if self._lane is not None:
            return self._lane.read(user_id, secretary_id, self.clock(), limit)
        params = {"u": user_id, "s": secretary_id, "now": self.clock(), "lim": limit}
        query = self._sql.read if limit is not None else self._sql.read_all
        with connected(self.engine) as conn:
            rows = conn.execute(query, params).all()
        return [Message(role, content, at, meta) for role, content, at, meta in reversed(rows)]

    async def aread(
        self, user_id: int, secretary_id: uuid.UUID, limit: int | None = None
    ) -> list[Message]:
        """On a SQLite file, on the loop itself unless SQLite would make it wait (then as
        any blocking store: on a thread); see sqlite_lane."""
        if self._lane is not None:
            try:
                return self._lane.read(user_id, secretary_id, self.clock(), limit, wait=False)
            except WouldWait:
                pass
        return await super().aread(user_id, secretary_id, limit)

    async def aappend_many(
        self,
        items: list[tuple[int, uuid.UUID, Message]],
        *,
        policy: ContextPolicy | None = None,
        since: float | None = None,
    ) -> int:
        """On a SQLite file, on the loop: a held write lock is waited out there (async
        sleeps) for up to `LOOP_LOCK_WAIT_S`, then on a thread (see sqlite_lane)."""
        rules = policy or self.policy
        if self._lane is not None:
            written = await self._append_on_loop(self._lane, items, rules, since)
            if written is not None:
                return written
        return await super().aappend_many(items, policy=rules, since=since)

    async def _append_on_loop(
        self,
        lane: SqliteLane,
        items: list[tuple[int, uuid.UUID, Message]],
        rules: ContextPolicy,
        since: float | None = None,
    ) -> int | None:
        """The write on the loop, or None to leave it to a thread (a long lock, a race)."""
        pending = self._checkpointing
        if pending is not None and not pending.done():
            # A few milliseconds: the checkpoint catches up only while nobody writes.
            await asyncio.wait([asyncio.wrap_future(pending)])
        loop = asyncio.get_running_loop()
        give_up = loop.time() + LOOP_LOCK_WAIT_S
        delay = 0.0005
        turns = _turns(items)
        while True:
            try:
                written = lane.append_turns(turns, rules, self.clock(), wait=False, since=since)
            except WouldWait:
                if loop.time() + delay > give_up:
                    return None  # held long (an import, a migration): wait on a thread
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.02)
                continue
            except sqlite3.IntegrityError:
                return None  # another writer created the context: the thread retries
            if lane.committed_inline():
                self._checkpoint_soon(lane)
            return written

    def _checkpoint_soon(self, lane: SqliteLane) -> None:
        """A WAL checkpoint on the store's thread pool, one at a time; a failure is
        logged (the next one tries again), never lost."""
        pending = self._checkpointing
        if pending is not None and not pending.done():
            return
        done = self.hops().submit(lane.checkpoint)
        done.add_done_callback(_report_checkpoint)
        self._checkpointing = done

    def stats(self) -> ContextStats:
        """One GROUP BY over live contexts."""
        query = (
            select(
                CTX.c.secretary_id, func.count(), func.coalesce(func.sum(CTX.c.message_count), 0)
            )
            .where(CTX.c.expires_at > literal(self.clock(), UTCDateTime()))
            .group_by(CTX.c.secretary_id)
        )
        with connected(self.engine) as conn:
            per = {sec: (int(n), int(m)) for sec, n, m in conn.execute(query)}
        return ContextStats(
            contexts=sum(n for n, _ in per.values()),
            messages=sum(m for _, m in per.values()),
            by_secretary=per,
        )

    def iter_contexts(
        self, *, user_id: int | None = None, secretary_id: uuid.UUID | None = None
    ) -> Iterator[ContextSummary]:
        """Live contexts, most recently active first."""
        query = select(CTX.c.user_id, CTX.c.secretary_id, CTX.c.message_count, CTX.c.last_activity)
        query = query.where(*self._filters(None, user_id, secretary_id, live=True))
        with connected(self.engine) as conn:
            rows = conn.execute(query.order_by(CTX.c.last_activity.desc())).all()
        for uid, sid, count, last in rows:
            yield ContextSummary(uid, sid, count, last)

    # -- purge ----------------------------------------------------------------------------

    def _filters(
        self,
        older_than: timedelta | None,
        user_id: int | None,
        secretary_id: uuid.UUID | None,
        *,
        live: bool = False,
    ) -> list[ColumnElement[bool]]:
        now = self.clock()
        conds: list[ColumnElement[bool]] = []
        if user_id is not None:
            conds.append(CTX.c.user_id == user_id)
        if secretary_id is not None:
            conds.append(CTX.c.secretary_id == secretary_id)
        if live:
            conds.append(CTX.c.expires_at > literal(now, UTCDateTime()))
        elif older_than is not None:
            conds.append(CTX.c.last_activity < literal(now - older_than, UTCDateTime()))
        elif user_id is None and secretary_id is None:
            # The default purge: whatever has outlived its own retention.
            conds.append(CTX.c.expires_at <= literal(now, UTCDateTime()))
        return conds

    def purge(
        self,
        *,
        older_than: timedelta | None = None,
        user_id: int | None = None,
        secretary_id: uuid.UUID | None = None,
        dry_run: bool = False,
        batch_size: int = 1000,
        progress: ProgressCallback | None = None,
    ) -> int:
        """Delete matching contexts in batches of `batch_size`, one DELETE statement each.

        All of a user's (or one context's) contexts are fenced first: a turn in flight
        cannot write them back (see fences.py)."""
        if user_id is not None and older_than is None and not dry_run:
            self.fence(user_id, secretary_id)
        conds = self._filters(older_than, user_id, secretary_id)
        if self._lane is not None and not dry_run:
            # What this process remembers of contexts may be about to go (see ContextMemo).
            self._lane.memo.clear()
        with connected(self.engine) as conn:
            total = conn.execute(select(func.count()).select_from(CTX).where(*conds)).scalar_one()
        if dry_run or total == 0:
            return int(total)
        done = 0
        if progress:
            progress(0, total)
        while True:
            # One DELETE per batch; the foreign key's ON DELETE CASCADE takes the messages.
            batch = select(CTX.c.id).where(*conds).order_by(CTX.c.id).limit(batch_size)
            with transaction(self.engine, write=True) as conn:
                deleted = conn.execute(
                    delete(CTX).where(CTX.c.id.in_(batch.scalar_subquery())),
                    execution_options={"preserve_rowcount": True},
                ).rowcount
            if deleted <= 0:
                break
            done += deleted
            if progress:
                progress(done, max(total, done))
        return done


def context_lock_key(user_id: int, secretary_id: uuid.UUID) -> int:
    """The PostgreSQL advisory lock of one context's writes (a signed 64-bit integer, in
    a key space apart from the fences' user locks)."""
    import hashlib

    digest = hashlib.sha256(f"secretaries-context-lock:{user_id}:{secretary_id.hex}".encode())
    return int.from_bytes(digest.digest()[:8], "big", signed=True)


class _Statements:
    """The store's statements, built once: building them per call costs more than running."""

    def __init__(self, postgresql: bool) -> None:
        self.postgres = postgresql
        now = bindparam("now", type_=UTCDateTime())
        pair = and_(CTX.c.user_id == bindparam("u"), CTX.c.secretary_id == bindparam("s"))
        find = select(CTX.c.id, CTX.c.expires_at, CTX.c.message_count).where(pair)
        # A row lock on PostgreSQL serialises two appends to one context.
        self.find = find.with_for_update() if postgresql else find
        self.insert_context = (
            insert(CTX)
            .values(
                user_id=bindparam("u"),
                secretary_id=bindparam("s"),
                last_activity=now,
                expires_at=now,
                message_count=0,
            )
            .returning(CTX.c.id)
        )
        self.clear_messages = delete(MSG).where(MSG.c.context_id == bindparam("c"))
        self.insert_message = insert(MSG).values(
            context_id=bindparam("c"),
            role=bindparam("role"),
            content=bindparam("content"),
            meta=bindparam("meta", type_=MSG.c.meta.type),
            created_at=bindparam("at", type_=UTCDateTime()),
        )
        newest_dropped = (
            select(MSG.c.id)
            .where(MSG.c.context_id == bindparam("c"))
            .order_by(MSG.c.id.desc())
            .offset(bindparam("keep"))
            .limit(1)
            .scalar_subquery()
        )
        self.trim = delete(MSG).where(
            MSG.c.context_id == bindparam("c"), MSG.c.id <= newest_dropped
        )
        self.touch = (
            update(CTX)
            .where(CTX.c.id == bindparam("c"))
            .values(
                last_activity=now,
                expires_at=bindparam("exp", type_=UTCDateTime()),
                message_count=bindparam("n"),
            )
        )
        self.read_all = (
            select(MSG.c.role, MSG.c.content, MSG.c.created_at, MSG.c.meta)
            .join(CTX, CTX.c.id == MSG.c.context_id)
            .where(pair, CTX.c.expires_at > now)
            .order_by(MSG.c.id.desc())
        )
        self.read = self.read_all.limit(bindparam("lim"))
        self.recent_meta = (
            select(MSG.c.meta)
            .join(CTX, CTX.c.id == MSG.c.context_id)
            .where(pair)
            .order_by(MSG.c.id.desc())
            .limit(bindparam("lim"))
        )


def _by_context(
    items: list[tuple[int, uuid.UUID, Message]],
) -> Iterator[tuple[tuple[int, uuid.UUID], list[Message]]]:
    """Consecutive messages of one context together (a turn is checked and written whole)."""
    for pair, group in groupby(items, key=lambda item: (item[0], item[1])):
        yield pair, [message for _u, _s, message in group]


def _turns(
    items: list[tuple[int, uuid.UUID, Message]],
) -> list[tuple[int, uuid.UUID, list[Message]]]:
    return [
        (user_id, secretary_id, messages)
        for (user_id, secretary_id), messages in _by_context(items)
    ]


def _report_checkpoint(done: Future[None]) -> None:
    failure = done.exception()
    if failure is not None:
        log.warning("WAL checkpoint of the embedded store failed: %s", failure)
