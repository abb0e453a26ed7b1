"""Links: assignment, resolution of a user's secretary, history."""

from __future__ import annotations

import functools
import time
import uuid
from typing import Any

from sqlalchemy import (
    Select,
    bindparam,
    func,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased
from sqlmodel import col

from secretaries_core.catalog import linksql, reads, writes
from secretaries_core.catalog.models import (
    Assistant,
    TelegramUser,
)
from secretaries_core.catalog.refs import UserRef
from secretaries_core.catalog.registry.base import (
    ASSIGN_ATTEMPTS,
    RegistryBase,
    Resolution,
)
from secretaries_core.catalog.schemas import (
    AssignOut,
    LinkOut,
    SecretaryOut,
    Source,
    UserOut,
)
from secretaries_core.catalog.serving import no_secretary
from secretaries_core.errors import (
    Conflict,
)
from secretaries_core.plumbing.db import session_scope


class LinksMixin(RegistryBase):
    """Links: assignment, resolution of a user's secretary, history."""

    # -- links -----------------------------------------------------------------------------

    def assign(self, user_ref: UserRef, secretary_ref: str | uuid.UUID) -> AssignOut:
        """Switch the user to the secretary: close the old link, open a new one, atomically.

        Assigning the current secretary again changes nothing. Racing writers are
        serialised by a row lock (PostgreSQL) or the write lock (SQLite); if the partial
        unique index still rejects one, it is retried before reporting a conflict.
        """

        def work(session: Session) -> AssignOut:
            done = writes.assign(session, user_ref, secretary_ref, self.clock)
            return AssignOut(
                user=UserOut(telegram_id=done.telegram_id, username=done.username),
                secretary=done.secretary,
                previous=done.previous,
                changed=done.changed,
            )

        for attempt in range(ASSIGN_ATTEMPTS):
            try:
                with session_scope(self.engine, write=True) as session:
                    result = work(session)
            except IntegrityError:
                time.sleep(0.01 * (attempt + 1))
                continue
            if result.changed:
                self._changed("link", telegram_id=result.user.telegram_id)
            return result
        raise Conflict(f"user {user_ref} was reassigned concurrently; try again")

    def resolve(self, user_ref: UserRef) -> Resolution:
        """The user's secretary: the active link's if active, else the default, else an error."""
        return self._read(lambda s: self._resolve(s, user_ref)[0])

    def _resolve(self, session: Session, user_ref: UserRef) -> tuple[Resolution, int]:
        """One query: the user, their active link's secretary, the default, and both counts.

        Returns the resolution and the resolved secretary's number of users.
        """
        by_name, value = reads.user_key(user_ref)
        query = _resolution_query(by_name)
        user, mine, fallback, mine_users, default_users = self._one_user(
            session.execute(query, {"ref": value}).all(), user_ref
        )
        if mine is not None and mine.is_active:
            return Resolution(user, mine, "assigned"), mine_users
        if fallback is None:
            raise no_secretary(session)
        source: Source = "default" if mine is None else "fallback"
        return Resolution(user, fallback, source), default_users

    def current(self, user_ref: UserRef) -> tuple[Resolution, SecretaryOut]:
        """`resolve` plus the resolved secretary's public shape (with its user count)."""

        def work(session: Session) -> tuple[Resolution, SecretaryOut]:
            found, users = self._resolve(session, user_ref)
            return found, SecretaryOut.of(found.secretary, users)

        return self._read(work)

    def history(self, user_ref: UserRef) -> list[LinkOut]:
        """Every link of the user, newest first."""

        def work(session: Session) -> list[LinkOut]:
            user = self._user(session, user_ref)
            assert user.id is not None
            return [
                LinkOut(
                    secretary_id=sid,
                    secretary=name,
                    is_active=active,
                    created_at=since,
                    updated_at=changed,
                )
                for sid, name, active, since, changed in reads.link_history(session, user.id)
            ]

        return self._read(work)


@functools.cache
def _resolution_query(by_name: bool) -> Select[Any]:
    """Built once per lookup kind: constructing aliases per call costs more than running it."""
    linked = aliased(Assistant, name="linked")
    default = aliased(Assistant, name="current_default")
    link, counted = linksql.LINK.alias("l"), linksql.LINK.alias("c")

    def users_of(secretary: Any) -> Any:
        return (
            select(func.count())
            .where(counted.c.secretary_id == secretary.id, counted.c.is_active)
            .scalar_subquery()
        )

    who = (
        func.lower(col(TelegramUser.username)) == bindparam("ref")
        if by_name
        else col(TelegramUser.telegram_id) == bindparam("ref")
    )
    return (
        select(TelegramUser, linked, default, users_of(linked), users_of(default))
        .outerjoin(link, (link.c.user_id == col(TelegramUser.id)) & link.c.is_active)
        .outerjoin(linked, col(linked.id) == link.c.secretary_id)
        .outerjoin(
            default,
            col(default.is_default) & col(default.is_active) & col(default.is_secretary),
        )
        .where(who)
        .limit(2)
    )
