"""Set-based SQL over the link table: new links for many users in one statement."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Uuid,
    and_,
    exists,
    func,
    insert,
    literal,
    literal_column,
    select,
    true,
    update,
)

from secretaries_core.models import TelegramUser, UserSecretaryLink
from secretaries_core.timeutil import UTCDateTime

LINK = UserSecretaryLink.__table__
USER = TelegramUser.__table__

# SQLite has no UUID generator: build a version-4 UUID in SQL, as 32 hex digits, the way
# SQLAlchemy's Uuid type stores it there.
_SQLITE_UUID4 = (
    "lower(hex(randomblob(4)) || hex(randomblob(2)) || '4' || substr(hex(randomblob(2)), 2)"
    " || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2)"
    " || hex(randomblob(6)))"
)


def new_uuid_sql(conn: Connection) -> ColumnElement[Any]:
    """A SQL expression producing a fresh random UUID per row on this connection's database."""
    if conn.dialect.name == "postgresql":
        return func.gen_random_uuid()
    if conn.dialect.name == "sqlite":
        return literal_column(_SQLITE_UUID4, Uuid())
    raise NotImplementedError(f"no UUID generator for {conn.dialect.name}")


def has_active_link(secretary_id: uuid.UUID | None = None) -> ColumnElement[bool]:
    """Correlated EXISTS: the outer user row has an active link (to `secretary_id` if given)."""
    cond = and_(LINK.c.user_id == USER.c.id, LINK.c.is_active)
    if secretary_id is not None:
        cond = and_(cond, LINK.c.secretary_id == secretary_id)
    return exists().where(cond)


def link_values(
    conn: Connection, user_id: ColumnElement[Any], secretary_id: uuid.UUID, now: datetime
) -> list[ColumnElement[Any]]:
    """The SELECT list for new active links, in `LINK_COLUMNS` order."""
    stamp = literal(now, UTCDateTime())
    return [new_uuid_sql(conn), user_id, literal(secretary_id, Uuid()), true(), stamp, stamp]


LINK_COLUMNS = ["id", "user_id", "secretary_id", "is_active", "created_at", "updated_at"]


def link_unlinked_users(
    conn: Connection, secretary_id: uuid.UUID, now: datetime, lo: int, hi: int
) -> int:
    """Give every user with `lo < id <= hi` and no active link an active link; one INSERT."""
    rows = select(*link_values(conn, USER.c.id, secretary_id, now)).where(
        USER.c.id > lo, USER.c.id <= hi, ~has_active_link()
    )
    return conn.execute(insert(LINK).from_select(LINK_COLUMNS, rows)).rowcount


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
    return conn.execute(insert(LINK).from_select(LINK_COLUMNS, released)).rowcount


def next_window(conn: Connection, eligible: ColumnElement[bool], lo: int, size: int) -> int | None:
    """The highest user id among the next `size` eligible users after `lo`, or None when done."""
    ids = (
        select(USER.c.id).where(USER.c.id > lo, eligible).order_by(USER.c.id).limit(size)
    ).subquery()
    return conn.execute(select(func.max(ids.c.id))).scalar_one_or_none()


def count_eligible(conn: Connection, eligible: ColumnElement[bool]) -> int:
    """How many users satisfy `eligible`."""
    return conn.execute(select(func.count()).select_from(USER).where(eligible)).scalar_one()
