"""The embedded context store: two tables in the configured database (SQLite or PostgreSQL)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    delete,
    func,
    insert,
    literal,
    select,
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
)
from secretaries_core.context.sql_tables import CONTEXT_TABLE as CTX
from secretaries_core.context.sql_tables import MESSAGE_TABLE as MSG
from secretaries_core.db import session_scope
from secretaries_core.errors import Conflict
from secretaries_core.timeutil import UTCDateTime, utcnow

APPEND_ATTEMPTS = 5


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
        rules = policy or self.policy
        batch = list(items)
        for attempt in range(APPEND_ATTEMPTS):
            try:
                with session_scope(self.engine, write=True) as session:
                    conn = session.connection()
                    for user_id, secretary_id, message in batch:
                        self._append(conn, user_id, secretary_id, message, rules)
                return len(batch)
            except IntegrityError:
                # Two writers created the same new context at once; the loser retries.
                time.sleep(0.005 * (attempt + 1))
        raise Conflict("the context changed concurrently; try again")

    def _append(
        self,
        conn: Connection,
        user_id: int,
        secretary_id: uuid.UUID,
        message: Message,
        rules: ContextPolicy,
    ) -> None:
        now = self.clock()
        expires = now + rules.ttl
        pair = and_(CTX.c.user_id == user_id, CTX.c.secretary_id == secretary_id)
        query = select(CTX.c.id, CTX.c.expires_at, CTX.c.message_count).where(pair)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = conn.execute(query).one_or_none()
        if row is None:
            context_id = conn.execute(
                insert(CTX)
                .values(
                    user_id=user_id,
                    secretary_id=secretary_id,
                    last_activity=now,
                    expires_at=expires,
                    message_count=0,
                )
                .returning(CTX.c.id)
            ).scalar_one()
            count = 0
        else:
            context_id, old_expiry, count = row
            if old_expiry <= now:
                # Idle past its retention: it is gone even if purge has not run yet.
                conn.execute(delete(MSG).where(MSG.c.context_id == context_id))
                count = 0
        conn.execute(
            insert(MSG).values(
                context_id=context_id,
                role=message.role,
                content=message.content,
                meta=dict(message.metadata) if message.metadata else None,
                created_at=message.at,
            )
        )
        count += 1
        if count > rules.max_messages:
            newest_dropped = (
                select(MSG.c.id)
                .where(MSG.c.context_id == context_id)
                .order_by(MSG.c.id.desc())
                .offset(rules.max_messages)
                .limit(1)
                .scalar_subquery()
            )
            conn.execute(
                delete(MSG).where(MSG.c.context_id == context_id, MSG.c.id <= newest_dropped)
            )
            count = rules.max_messages
        conn.execute(
            update(CTX)
            .where(CTX.c.id == context_id)
            .values(last_activity=now, expires_at=expires, message_count=count)
        )

    def clear(self, user_id: int, secretary_id: uuid.UUID) -> bool:
        """Delete one context and its messages."""
        return self.purge(user_id=user_id, secretary_id=secretary_id) > 0

    # -- reads ----------------------------------------------------------------------------

    def read(
        self, user_id: int, secretary_id: uuid.UUID, limit: int | None = None
    ) -> list[Message]:
        """The last `limit` messages of a live context, oldest first, in one query."""
        query = (
            select(MSG.c.role, MSG.c.content, MSG.c.created_at, MSG.c.meta)
            .join(CTX, CTX.c.id == MSG.c.context_id)
            .where(
                CTX.c.user_id == user_id,
                CTX.c.secretary_id == secretary_id,
                CTX.c.expires_at > literal(self.clock(), UTCDateTime()),
            )
            .order_by(MSG.c.id.desc())
        )
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [Message(role, content, at, meta) for role, content, at, meta in reversed(rows)]

    def stats(self) -> ContextStats:
        """One GROUP BY over live contexts."""
        query = (
            select(
                CTX.c.secretary_id, func.count(), func.coalesce(func.sum(CTX.c.message_count), 0)
            )
            .where(CTX.c.expires_at > literal(self.clock(), UTCDateTime()))
            .group_by(CTX.c.secretary_id)
        )
        with self.engine.connect() as conn:
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
        with self.engine.connect() as conn:
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
        """Delete matching contexts in batches of `batch_size`, one DELETE statement each."""
        conds = self._filters(older_than, user_id, secretary_id)
        with self.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(CTX).where(*conds)).scalar_one()
        if dry_run or total == 0:
            return int(total)
        done = 0
        if progress:
            progress(0, total)
        while True:
            # One DELETE per batch; the foreign key's ON DELETE CASCADE takes the messages.
            batch = select(CTX.c.id).where(*conds).order_by(CTX.c.id).limit(batch_size)
            with session_scope(self.engine, write=True) as session:
                deleted = (
                    session.connection()
                    .execute(
                        delete(CTX).where(CTX.c.id.in_(batch.scalar_subquery())),
                        execution_options={"preserve_rowcount": True},
                    )
                    .rowcount
                )
            if deleted <= 0:
                break
            done += deleted
            if progress:
                progress(done, max(total, done))
        return done
