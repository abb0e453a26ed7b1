"""The registry's shared ground: engine, change listeners, lookups and transactions."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from sqlalchemy import (
    ColumnElement,
    func,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlmodel import col

from secretaries_core.catalog import linksql, writes
from secretaries_core.catalog.migration import ProgressCallback as ProgressCallback
from secretaries_core.catalog.models import (
    Assistant,
    TelegramUser,
)
from secretaries_core.catalog.refs import UserRef, normalize_username
from secretaries_core.catalog.schemas import (
    Source,
)
from secretaries_core.catalog.serving import ChangeListener as ChangeListener
from secretaries_core.catalog.serving import ServingCatalog
from secretaries_core.errors import (
    Conflict,
)
from secretaries_core.plumbing.db import session_scope

T = TypeVar("T")
UserStatus = Literal["created", "updated", "unchanged"]

ASSIGN_ATTEMPTS = 5
# Keeps each statement's IN list well below every driver's parameter limit.
LOOKUP_CHUNK = 500


@dataclass(frozen=True)
class Resolution:
    """The secretary a user gets right now, and why."""

    user: TelegramUser
    secretary: Assistant
    source: Source


@dataclass(frozen=True)
class Registration:
    """A registered user, what happened, and who held their username before (if anyone)."""

    user: TelegramUser
    status: UserStatus
    username_moved_from: int | None = None


@dataclass(frozen=True)
class Change:
    """Result of a catalog operation: the secretary after it, and whether anything changed."""

    secretary: Assistant
    changed: bool
    moved_users: int = 0


class RegistryBase(ServingCatalog):
    """The engine, change listeners, lookups and transactions every part of the registry uses.

    The message path's calls and the change notification are `ServingCatalog`'s (Core).
    """

    # -- lookups -------------------------------------------------------------------------

    def _secretary(
        self, session: Session, ref: str | uuid.UUID, *, lock: bool = False
    ) -> Assistant:
        sec_id = writes.as_uuid(ref)
        query = select(Assistant)  # secretaries and assistants: both are managed alike
        if sec_id is not None:
            query = query.where(col(Assistant.id) == sec_id)
        else:
            query = query.where(col(Assistant.name) == ref)
        if lock:
            query = query.with_for_update()
        found = session.scalars(query).one_or_none()
        if found is None:
            raise writes.unknown_secretary(ref)
        return found

    @staticmethod
    def _user_condition(ref: UserRef) -> ColumnElement[bool]:
        if isinstance(ref, int):
            return col(TelegramUser.telegram_id) == ref
        name = normalize_username(ref)
        return func.lower(col(TelegramUser.username)) == (name or "").lower()

    @staticmethod
    def _one_user(found: Sequence[T], ref: UserRef) -> T:
        if not found:
            raise writes.unknown_user(ref)
        if len(found) > 1:
            raise writes.several_users(ref)
        return found[0]

    def _user(self, session: Session, ref: UserRef, *, lock: bool = False) -> TelegramUser:
        query = select(TelegramUser).where(self._user_condition(ref))
        if lock:
            query = query.with_for_update()
        return self._one_user(session.scalars(query.limit(2)).all(), ref)

    def _active_secretary(self, session: Session, ref: str | uuid.UUID) -> Assistant:
        """A secretary users can be given (assign, the picker, the default, a migration)."""
        secretary = self._secretary(session, ref)
        refused = writes.unusable(
            secretary.name, is_secretary=secretary.is_secretary, is_active=secretary.is_active
        )
        if refused is not None:
            raise refused
        return secretary

    def _user_counts(
        self, session: Session, ids: Iterable[uuid.UUID] | None = None
    ) -> dict[uuid.UUID, int]:
        link = linksql.LINK
        query = (
            select(link.c.secretary_id, func.count())
            .where(link.c.is_active)
            .group_by(link.c.secretary_id)
        )
        if ids is not None:
            query = query.where(link.c.secretary_id.in_(list(ids)))
        return {sec_id: n for sec_id, n in session.execute(query)}

    def _default(self, session: Session) -> Assistant | None:
        return session.scalars(
            select(Assistant).where(
                col(Assistant.is_default),
                col(Assistant.is_active),
                col(Assistant.is_secretary),
            )
        ).one_or_none()

    def _read(self, work: Callable[[Session], T]) -> T:
        with session_scope(self.engine) as session:
            return work(session)

    def _write(
        self,
        work: Callable[[Session], T],
        *,
        conflict: str,
        event: str = "catalog",
        telegram_id: int | None = None,
    ) -> T:
        try:
            with session_scope(self.engine, write=True) as session:
                result = work(session)
        except IntegrityError as exc:
            raise Conflict(conflict) from exc
        self._changed(event, telegram_id=telegram_id)
        return result
