"""Bulk migration: give users an explicit link, set-based and resumable."""

from __future__ import annotations

import uuid

from secretaries_core.catalog import migration
from secretaries_core.catalog.registry.base import (
    ProgressCallback,
    RegistryBase,
)
from secretaries_core.catalog.schemas import (
    MigrationOut,
)


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
        done = migration.migrate_users(
            self.engine,
            self.clock,
            to=to,
            from_=from_,
            dry_run=dry_run,
            batch_size=batch_size,
            progress=progress,
        )
        if done["migrated"] and not dry_run:
            self._changed("link")
        return MigrationOut(**done)
