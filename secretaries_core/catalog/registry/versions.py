"""Versions of a secretary: every version's content, drafts, diffs, pins, reply references.

The `assistant` row holds the live content and its number; `secretary_version` holds every
version's content (rollouts.py decides which one serves a user).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from secretaries_core.catalog import writes
from secretaries_core.catalog.models import Assistant
from secretaries_core.catalog.reads import (
    diff_document,
)
from secretaries_core.catalog.refs import UserRef
from secretaries_core.catalog.registry.providers import ProvidersMixin
from secretaries_core.catalog.rollout_writes import DEFAULT_MIN_MESSAGES as DEFAULT_MIN_MESSAGES
from secretaries_core.catalog.rollout_writes import Rollout as Rollout
from secretaries_core.catalog.rollout_writes import RolloutState as RolloutState
from secretaries_core.catalog.rollout_writes import running
from secretaries_core.catalog.serving import Served as Served
from secretaries_core.catalog.versions_tables import (
    REPLY_REF_TABLE,
)

T = TypeVar("T")
# How long the bot's reply → version references are kept (reactions come within days).
REPLY_REF_RETENTION = timedelta(days=7)
ALL = "all"  # the period of a version's counts over its whole life


class VersionsMixin(ProvidersMixin):
    """Versions, rollouts and pins of the catalog."""

    def _ensure_live_row(self, session: Session, secretary: Assistant) -> None:
        """A secretary made before versions existed (or by hand) gets its live row now."""
        writes.ensure_live_row(session, secretary, self.clock())

    def _version_row(self, session: Session, secretary: Assistant, version: int) -> Any:
        return writes.version_row(session, secretary, version, self.clock())

    def _write_quietly(self, work: Callable[[Session], T]) -> T:
        """A write transaction that notifies nobody (backfilling a live row changes nothing)."""
        from secretaries_core.plumbing.db import session_scope

        with session_scope(self.engine, write=True) as session:
            return work(session)

    def diff(self, ref: str | uuid.UUID, v1: int, v2: int) -> dict[str, Any]:
        """Model and param changes and the prompt as a unified diff, from V1 to V2."""

        def work(session: Session) -> dict[str, Any]:
            secretary = self._secretary(session, ref)
            a, b = (
                self._version_row(session, secretary, v1),
                self._version_row(session, secretary, v2),
            )
            return diff_document(secretary.name, v1, v2, a, b)

        return self._write_quietly(work)

    def pin(self, user_ref: UserRef, ref: str | uuid.UUID, version: int) -> None:
        """USER gets VERSION of SEC, whatever is live or rolling out."""
        telegram_id = self._write_quietly(
            lambda session: writes.pin(session, user_ref, ref, version, self.clock())
        )
        self._changed("link", telegram_id=telegram_id)

    def unpin(self, user_ref: UserRef, ref: str | uuid.UUID) -> bool:
        """Remove USER's pin on SEC; False when there was none."""
        telegram_id, removed = self._write_quietly(
            lambda session: writes.unpin(session, user_ref, ref)
        )
        self._changed("link", telegram_id=telegram_id)
        return removed

    def version_usage(self, ref: str | uuid.UUID | None = None) -> dict[str, dict[str, Any]]:
        """Lifetime counts per secretary and version: {NAME: {VERSION: {messages, ...}}}."""

        from secretaries_core.catalog.usage_report import version_usage

        return self._read(lambda session: version_usage(session, ref))

    def remember_reply(
        self, telegram_id: int, message_id: int, secretary_id: uuid.UUID, version: int
    ) -> None:
        """The bot sent a reply as `message_id`: keep which version wrote it (for reactions)."""
        cutoff = self.clock() - REPLY_REF_RETENTION

        def work(session: Session) -> None:
            session.execute(
                REPLY_REF_TABLE.delete().where(
                    REPLY_REF_TABLE.c.telegram_id == telegram_id,
                    REPLY_REF_TABLE.c.message_id == message_id,
                )
            )
            session.execute(
                REPLY_REF_TABLE.insert().values(
                    telegram_id=telegram_id,
                    message_id=message_id,
                    secretary_id=secretary_id,
                    version=version,
                    created_at=self.clock(),
                )
            )
            # Old references go as new ones come (index on created_at): they expire.
            session.execute(REPLY_REF_TABLE.delete().where(REPLY_REF_TABLE.c.created_at < cutoff))

        self._write_quietly(work)

    def _running(self, session: Session, secretary_id: uuid.UUID) -> Rollout | None:
        return running(session, secretary_id)
