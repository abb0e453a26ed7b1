"""Set-based SQL over the link table: new links for many users in one statement."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Insert,
    Select,
    Uuid,
    exists,
    func,
    insert,
    literal,
    literal_column,
    select,
    true,
    update,
)

from secretaries_core.catalog.reads import LINK as LINK
from secretaries_core.catalog.reads import USER as USER
from secretaries_core.plumbing.timeutil import UTCDateTime

# SQLite has no UUID generator: build a time-ordered version-7 UUID in SQL (48-bit Unix
# milliseconds, then random bits), as 32 hex digits, the way SQLAlchemy's Uuid type stores
# it there. Time-ordered keys append to the primary-key b-tree; random (v4) keys would
# dirty a fresh page per row in every batch once the index outgrows the page cache.
SQLITE_UUID7_SQL = (
    "lower(printf('%012x', CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))"
    " || '7' || substr(hex(randomblob(2)), 2)"
    " || substr('89ab', 1 + (random() & 3), 1) || substr(hex(randomblob(8)), 2))"
)


def new_uuid_sql(conn: Connection) -> ColumnElement[Any]:
    """A SQL expression producing a fresh random UUID per row on this connection's database."""
    if conn.dialect.name == "postgresql":
        return func.gen_random_uuid()
    if conn.dialect.name == "sqlite":
        return literal_column(SQLITE_UUID7_SQL, Uuid())
    raise NotImplementedError(f"no UUID generator for {conn.dialect.name}")


def has_active_link(lo: int | None = None, hi: int | None = None) -> ColumnElement[bool]:
    """Correlated EXISTS: the outer user row has an active link.

    `lo`/`hi`: the outer rows' id window, repeated on the link side. The correlation
    implies it, but PostgreSQL does not carry a range across it: its merge anti-join
    walked the link index from the first user on every batch, so a migration went
    quadratic (1,000,000 users: 25 s, the last batches 340 ms each, against 13 s for one
    hand-written statement).
    """
    window = [] if lo is None or hi is None else [LINK.c.user_id > lo, LINK.c.user_id <= hi]
    return exists().where(LINK.c.user_id == USER.c.id, LINK.c.is_active, *window)


def link_values(
    conn: Connection, user_id: ColumnElement[Any], secretary_id: uuid.UUID, now: datetime
) -> list[ColumnElement[Any]]:
    """The SELECT list for new active links, in `LINK_COLUMNS` order."""
    stamp = literal(now, UTCDateTime())
    return [new_uuid_sql(conn), user_id, literal(secretary_id, Uuid()), true(), stamp, stamp]


LINK_COLUMNS = ["id", "user_id", "secretary_id", "is_active", "created_at", "updated_at"]


def _inserted(conn: Connection, statement: Insert) -> int:
    # Without preserve_rowcount some drivers (psycopg) report -1 for INSERT ... SELECT.
    return conn.execute(statement, execution_options={"preserve_rowcount": True}).rowcount


def link_unlinked_users(
    conn: Connection, secretary_id: uuid.UUID, now: datetime, lo: int, hi: int
) -> int:
    """Give every user with `lo < id <= hi` and no active link an active link; one INSERT."""
    rows = select(*link_values(conn, USER.c.id, secretary_id, now)).where(
        USER.c.id > lo, USER.c.id <= hi, ~has_active_link(lo, hi)
    )
    return _inserted(conn, insert(LINK).from_select(LINK_COLUMNS, rows))


def move_links(
    conn: Connection,
    from_id: uuid.UUID,
    to_id: uuid.UUID,
    now: datetime,
    lo: int | None = None,
    hi: int | None = None,
) -> int:
    """Move every active link on `from_id` (users in `(lo, hi]` if given) to `to_id`.

    Two statements, one per set: the old links are closed with `updated_at = now`, and
    that stamp is how the INSERT finds exactly the users just released.
    """
    window = []
    if lo is not None and hi is not None:
        window = [LINK.c.user_id > lo, LINK.c.user_id <= hi]
    stamp = literal(now, UTCDateTime())
    conn.execute(
        update(LINK)
        .where(LINK.c.secretary_id == from_id, LINK.c.is_active, *window)
        .values(is_active=False, updated_at=stamp)
    )
    active = LINK.alias("active")
    released = select(*link_values(conn, LINK.c.user_id, to_id, now)).where(
        LINK.c.secretary_id == from_id,
        ~LINK.c.is_active,
        LINK.c.updated_at == stamp,
        *window,
        ~exists().where(active.c.user_id == LINK.c.user_id, active.c.is_active),
    )
    return _inserted(conn, insert(LINK).from_select(LINK_COLUMNS, released))


def user_ids(lo: int) -> Select[tuple[int]]:
    """Ids of all users above `lo`, in id order: a pure primary-key range scan.

    Windows for "users with no active link" are cut on this, and the INSERT applies the
    eligibility test once, so each batch probes the link table once per user, not twice.
    """
    return select(USER.c.id).where(USER.c.id > lo).order_by(USER.c.id)


def unlinked_user_ids(lo: int) -> Select[tuple[int]]:
    """Ids above `lo` of users with no active link, in id order."""
    return select(USER.c.id).where(USER.c.id > lo, ~has_active_link()).order_by(USER.c.id)


def linked_user_ids(secretary_id: uuid.UUID, lo: int) -> Select[tuple[int]]:
    """Ids above `lo` of users whose active link is on `secretary_id`, in id order.

    Walks the (secretary_id, is_active, user_id) index rather than probing every user.
    """
    return (
        select(LINK.c.user_id)
        .where(LINK.c.secretary_id == secretary_id, LINK.c.is_active, LINK.c.user_id > lo)
        .order_by(LINK.c.user_id)
    )


def next_window(conn: Connection, ids: Select[tuple[int]], size: int) -> int | None:
    """The highest id among the first `size` rows of `ids`, or None when there are none."""
    window = ids.limit(size).subquery()
    return conn.execute(select(func.max(window.c[0]))).scalar_one_or_none()


def count_rows(conn: Connection, ids: Select[tuple[int]]) -> int:
    """How many rows `ids` selects."""
    return conn.execute(
        select(func.count()).select_from(ids.order_by(None).subquery())
    ).scalar_one()
