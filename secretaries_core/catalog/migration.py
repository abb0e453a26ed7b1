"""Bulk migration on SQLAlchemy Core: give users an explicit link, set-based and resumable.

The registry runs this (and tells its listeners); the CLI runs it on its engine without
loading the ORM. Each batch is one committed statement pair over a window of user ids.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from secretaries_core.catalog import linksql, writes
from secretaries_core.catalog.reads import SECRETARY
from secretaries_core.errors import Conflict, InvalidInput, NoDefaultSecretary
from secretaries_core.plumbing.db import transaction

ProgressCallback = Callable[[int, int], None]
"""Called as `progress(done, total)` after every committed batch."""
BATCH_ATTEMPTS = 5


def migrate_users(
    engine: Any,
    clock: Callable[[], datetime],
    *,
    to: str | uuid.UUID | None = None,
    from_: str | uuid.UUID | None = None,
    dry_run: bool = False,
    batch_size: int = 10_000,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Give users an explicit link to `to` (default: the default secretary), batch by batch:
    `{"secretary", "migrated", "dry_run"}`.

    Without `from_`: every user with no active link. With `from_`: every user whose
    active link is on `from_`. A run killed half way is finished by running it again,
    with no duplicates.
    """
    if batch_size <= 0:
        raise InvalidInput("batch size must be positive")
    with transaction(engine) as conn:
        target = _target(conn, to)
        source = writes.secretary(conn, from_).id if from_ is not None else None
        if source == target.id:
            raise Conflict(f"--from and --to are both {target.name!r}")
        eligible = (
            linksql.unlinked_user_ids(0) if source is None else linksql.linked_user_ids(source, 0)
        )
        total = linksql.count_rows(conn, eligible)
    if dry_run:
        return {"secretary": target.name, "migrated": total, "dry_run": True}
    migrated, lo = 0, 0
    if progress:
        progress(0, total)
    while (done := _batch(engine, clock, target.id, source, lo, batch_size)) is not None:
        lo, count = done
        migrated += count
        if progress:
            progress(migrated, max(total, migrated))
    return {"secretary": target.name, "migrated": migrated, "dry_run": False}


def _target(conn: Any, to: str | uuid.UUID | None) -> Any:
    if to is not None:
        return writes.active_secretary(conn, to)
    found = conn.execute(
        select(SECRETARY).where(
            SECRETARY.c.is_default, SECRETARY.c.is_active, SECRETARY.c.is_secretary
        )
    ).one_or_none()
    if found is None:
        raise NoDefaultSecretary("there is no default secretary; pass --to SEC or set a default")
    return found


def _batch(
    engine: Any,
    clock: Callable[[], datetime],
    to_id: uuid.UUID,
    from_id: uuid.UUID | None,
    lo: int,
    size: int,
) -> tuple[int, int] | None:
    """One committed batch: (highest user id covered, links made), or None at the end."""
    for attempt in range(BATCH_ATTEMPTS):
        try:
            with transaction(engine, write=True) as conn:
                ids = (
                    linksql.user_ids(lo)
                    if from_id is None
                    else linksql.linked_user_ids(from_id, lo)
                )
                hi = linksql.next_window(conn, ids, size)
                if hi is None:
                    return None
                if from_id is None:
                    count = linksql.link_unlinked_users(conn, to_id, clock(), lo, hi)
                else:
                    count = linksql.move_links(conn, from_id, to_id, clock(), lo, hi)
                return hi, count
        except IntegrityError:
            # A concurrent assign gave one of these users a link: redo the batch.
            time.sleep(0.01 * (attempt + 1))
    raise Conflict("users were reassigned concurrently during migration; run it again")
