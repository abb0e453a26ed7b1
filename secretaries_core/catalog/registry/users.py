"""Users: registration (usernames move to their holder), import, limits and erasure."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy.orm import Session

from secretaries_core.catalog import reads, writes
from secretaries_core.catalog.models import (
    TelegramUser,
)
from secretaries_core.catalog.refs import UserRef
from secretaries_core.catalog.registry.base import (
    Registration,
    RegistryBase,
    T,
    UserStatus,
)
from secretaries_core.catalog.schemas import (
    ImportOut,
    UserListItem,
)
from secretaries_core.catalog.users_csv import UserRow
from secretaries_core.plumbing.db import session_scope
from secretaries_core.usage.quotas import Limits


class UsersMixin(RegistryBase):
    """Users: registration (usernames move to their holder), import, limits and erasure."""

    # -- users -----------------------------------------------------------------------------

    def get_user(self, ref: UserRef) -> TelegramUser:
        """The registered user with that Telegram id or @username."""
        return self._read(lambda s: self._user(s, ref))

    def add_user(
        self, telegram_id: int, username: str | None = None
    ) -> tuple[TelegramUser, UserStatus]:
        """Register a user; an existing one keeps their row and gets the new username if given."""
        found = self.register_user(telegram_id, username)
        return found.user, found.status

    def register_user(self, telegram_id: int, username: str | None = None) -> Registration:
        """`add_user`, also saying whose username moved to this user.

        Telegram usernames are unique at any moment: a username another user holds here is
        stale (they changed it on Telegram), so it moves to this user and the other user's
        username is cleared.
        """
        done = self._register(telegram_id, username)
        return Registration(
            TelegramUser(**done.row._mapping), done.status, done.username_moved_from
        )

    def erase_user_rows(self, user_ref: UserRef) -> tuple[int, int, int]:
        """Delete the user row, every link, pin and reply reference, and fold their usage
        into the totals of no user, in one transaction.

        Returns (telegram id, links deleted, usage rows deleted). Contexts live in the
        context store: `admin.erase_user` removes them around this call.
        """

        def work(session: Session) -> tuple[int, int, int]:
            return writes.erase_user_rows(session.connection(), user_ref)

        with session_scope(self.engine, write=True) as session:
            result = work(session)
        self._changed("user", telegram_id=result[0])
        return result

    def limits(self, user_ref: UserRef) -> Limits:
        """The user's own daily limits (overrides; None where not overridden)."""
        from secretaries_core.usage.quotas import Quotas

        user = self.get_user(user_ref)
        return Quotas(self.engine).overrides(user.telegram_id)

    def set_limits(self, user_ref: UserRef, **changes: int | None) -> Limits:
        """Change the user's daily limit overrides (`messages_per_day`, `tokens_per_day`).

        A value of None removes that override, so the secretary's or the global limit
        applies again. Returns the overrides after the change.
        """
        return self._read_write_user(
            lambda session: writes.set_limits(session, self.engine, user_ref, changes)
        )[1]

    def _read_write_user(self, work: Callable[[Session], tuple[int, T]]) -> tuple[int, T]:
        with session_scope(self.engine, write=True) as session:
            telegram_id, result = work(session)
        self._changed("user", telegram_id=telegram_id)
        return telegram_id, result

    def import_users(self, rows: list[UserRow]) -> ImportOut:
        """Register many users in one transaction: new ones inserted, others updated or kept."""

        def work(session: Session) -> ImportOut:
            return ImportOut(**writes.import_users(session.connection(), rows, self.clock()))

        return self._write(
            work, conflict="users were added concurrently; run the import again", event="user"
        )

    def list_users(
        self,
        *,
        secretary: str | uuid.UUID | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[UserListItem]:
        """Users by Telegram id, each with the secretary of their active link (if any).

        `limit` and `offset` page through them in the database (50,000 users are not
        read to show the first 50).
        """

        def work(session: Session) -> list[UserListItem]:
            sid = None if secretary is None else self._secretary(session, secretary).id
            return [
                UserListItem(telegram_id=tid, username=name, created_at=created, secretary=sec)
                for tid, name, created, sec in reads.user_page(session, sid, limit, offset)
            ]

        return self._read(work)
