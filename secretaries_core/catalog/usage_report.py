"""`usage` on SQLAlchemy Core: the usage report with the catalog's names, and each
version's lifetime counts — read without the ORM (the CLI's `usage` started at 2.4x
`import sqlalchemy` when it loaded the registry for two lookups)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from secretaries_core.catalog import writes
from secretaries_core.catalog.reads import COUNT, SECRETARY
from secretaries_core.catalog.refs import UserRef
from secretaries_core.plumbing.db import transaction
from secretaries_core.plumbing.timeutil import utcnow
from secretaries_core.usage.book import UsageBook, UsageReport


def usage_report(
    engine: Any,
    *,
    user: UserRef | None = None,
    secretary: str | uuid.UUID | None = None,
    since: timedelta | None = None,
    now: datetime | None = None,
) -> UsageReport:
    """Usage summed in total, per secretary and per UTC day, with the filters given.

    `since` counts whole UTC days: `--since 1d` is yesterday and today.
    """
    from secretaries_core.usage.quotas import day_of

    telegram_id = secretary_id = None
    if user is not None or secretary is not None:
        with transaction(engine) as conn:
            if user is not None:
                telegram_id = int(writes.user(conn, user).telegram_id)
            if secretary is not None:
                secretary_id = writes.secretary(conn, secretary).id
    first_day = day_of((now or utcnow()) - since) if since is not None else None
    return UsageBook(engine).report(
        telegram_id=telegram_id, secretary_id=secretary_id, since=first_day, describe=describe
    )


def describe(conn: Any, ids: set[uuid.UUID]) -> dict[uuid.UUID, tuple[str, Any]]:
    """Names and params (prices) of the secretaries `ids` that still exist."""
    a = SECRETARY.c
    rows = conn.execute(select(a.id, a.name, a.params).where(a.id.in_(ids))).all()
    return {row.id: (row.name, row.params) for row in rows}


def version_usage(conn: Any, ref: str | uuid.UUID | None = None) -> dict[str, dict[str, Any]]:
    """Lifetime counts per secretary and version: {NAME: {VERSION: {messages, ...}}}."""
    query = (
        select(SECRETARY.c.name, COUNT)
        .join(SECRETARY, SECRETARY.c.id == COUNT.c.secretary_id)
        .where(COUNT.c.period == "all")
        .order_by(SECRETARY.c.name, COUNT.c.version)
    )
    if ref is not None:
        query = query.where(COUNT.c.secretary_id == writes.secretary(conn, ref).id)
    out: dict[str, dict[str, Any]] = {}
    for row in conn.execute(query):
        out.setdefault(row.name, {})[str(row.version)] = {
            "messages": row.messages,
            "errors": row.errors,
            "prompt_tokens": row.prompt_tokens,
            "completion_tokens": row.completion_tokens,
            "likes": row.likes,
            "dislikes": row.dislikes,
        }
    return out
