"""Bulk migration: give users an explicit link, set-based and resumable."""

from __future__ import annotations

import time
import uuid

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from secretaries_core.catalog import linksql
from secretaries_core.catalog.models import (
    Assistant,
)
from secretaries_core.catalog.registry.base import (
    ASSIGN_ATTEMPTS,
    ProgressCallback,
    RegistryBase,
)
from secretaries_core.catalog.schemas import (
    MigrationOut,
)
from secretaries_core.errors import (
    Conflict,
    InvalidInput,
    NoDefaultSecretary,
)
from secretaries_core.plumbing.db import session_scope


class MigrationMixin(RegistryBase):
    """Bulk migration: give users an explicit link, set-based and resumable."""

    # -- bulk migration --------------------------------------------------------------------

    def migrate_users(
        self,
        *,
        to: str | uuid.UUID | None = None,
        from_: str | uuid.UUID | None = None,
        dry_run: bool = False,
        batch_size: int = 10_000,
        progress: ProgressCallback | None = None,
    ) -> MigrationOut:
        """Give users an explicit link to `to` (default: the default secretary), batch by batch.

        Without `from_`: every user with no active link. With `from_`: every user whose
        active link is on `from_`. Each batch is one committed set-based statement pair, so
        a run killed half way is finished by running it again, with no duplicates.
        """
        if batch_size <= 0:
            raise InvalidInput("batch size must be positive")

        def plan(session: Session) -> tuple[Assistant, uuid.UUID | None, int]:
            if to is None:
                target = self._default(session)
                if target is None:
                    raise NoDefaultSecretary(
                        "there is no default secretary; pass --to SEC or set a default"
                    )
            else:
                target = self._active_secretary(session, to)
            source = self._secretary(session, from_).id if from_ is not None else None
            if source == target.id:
                raise Conflict(f"--from and --to are both {target.name!r}")
            eligible = (
                linksql.unlinked_user_ids(0)
                if source is None
                else linksql.linked_user_ids(source, 0)
            )
            total = linksql.count_rows(session.connection(), eligible)
            return target, source, total

        target, source, total = self._read(plan)
        if dry_run:
            return MigrationOut(secretary=target.name, migrated=total, dry_run=True)
        migrated, lo = 0, 0
        if progress:
            progress(0, total)
        while (done := self._migrate_batch(target.id, source, lo, batch_size)) is not None:
            lo, count = done
            migrated += count
            if progress:
                progress(migrated, max(total, migrated))
        if migrated:
            self._changed("link")
        return MigrationOut(secretary=target.name, migrated=migrated, dry_run=False)

    def _migrate_batch(
        self, to_id: uuid.UUID, from_id: uuid.UUID | None, lo: int, size: int
    ) -> tuple[int, int] | None:
        """One committed batch: returns (highest user id covered, links made) or None at the end."""
        for attempt in range(ASSIGN_ATTEMPTS):
            try:
                with session_scope(self.engine, write=True) as session:
                    conn = session.connection()
                    ids = (
                        linksql.user_ids(lo)
                        if from_id is None
                        else linksql.linked_user_ids(from_id, lo)
                    )
                    hi = linksql.next_window(conn, ids, size)
                    if hi is None:
                        return None
                    now = self.clock()
                    if from_id is None:
                        count = linksql.link_unlinked_users(conn, to_id, now, lo, hi)
                    else:
                        count = linksql.move_links(conn, from_id, to_id, now, lo, hi)
                    return hi, count
            except IntegrityError:
                # A concurrent assign gave one of these users a link: redo the batch.
                time.sleep(0.01 * (attempt + 1))
        raise Conflict("users were reassigned concurrently during migration; run it again")
