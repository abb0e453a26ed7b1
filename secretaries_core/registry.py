"""`SecretaryRegistry`: the catalog, users, their links, resolution and bulk migration."""

from __future__ import annotations

import functools
import re
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar

from sqlalchemy import (
    ColumnElement,
    Engine,
    Select,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased
from sqlmodel import col

from secretaries_core import linksql
from secretaries_core.db import session_scope
from secretaries_core.errors import (
    Conflict,
    InactiveSecretary,
    InvalidInput,
    NoDefaultSecretary,
    UnknownSecretary,
    UnknownUser,
)
from secretaries_core.llm.providers import validate_model
from secretaries_core.models import (
    ASSISTANT_TABLE,
    TELEGRAMUSER_TABLE,
    Assistant,
    AssistantCreate,
    AssistantUpdate,
    TelegramUser,
    UserSecretaryLink,
)
from secretaries_core.refs import UserRef, normalize_username, validate_telegram_id
from secretaries_core.schemas import (
    AssignOut,
    ImportOut,
    LinkOut,
    MigrationOut,
    SecretaryDetail,
    SecretaryOut,
    Source,
    UserListItem,
    UserOut,
)
from secretaries_core.timeutil import utcnow
from secretaries_core.usage.quotas import Limits
from secretaries_core.users_csv import UserRow

T = TypeVar("T")
ChangeListener = Callable[[str, "uuid.UUID | None", "int | None"], None]
"""`listener(event, secretary_id, telegram_id)`, called after a committed change."""
UserStatus = Literal["created", "updated", "unchanged"]
ProgressCallback = Callable[[int, int], None]
"""Called as `progress(done, total)` after every committed batch."""

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


def _as_uuid(ref: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(ref)
    except ValueError:
        return None


class SecretaryRegistry:
    """Every catalog, user and link operation, each in its own transaction on `engine`."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock
        self._listeners: list[ChangeListener] = []

    # -- change notification (caches in the orchestrator subscribe here) -----------------

    def subscribe(self, listener: ChangeListener) -> None:
        """Call `listener(event, secretary_id, telegram_id)` after every committed change.

        Events: `catalog` (any secretary change), `deactivated` (with the secretary's id),
        `user` (one user registered or renamed, with their Telegram id; bulk imports
        without one), `link` (an assignment, with the user's Telegram id; migrations
        without one). A `telegram_id` of None means "possibly every user".
        """
        self._listeners.append(listener)

    def _changed(
        self, event: str, secretary_id: uuid.UUID | None = None, telegram_id: int | None = None
    ) -> None:
        for listener in self._listeners:
            listener(event, secretary_id, telegram_id)

    # -- lookups -------------------------------------------------------------------------

    def _secretary(
        self, session: Session, ref: str | uuid.UUID, *, lock: bool = False
    ) -> Assistant:
        sec_id = ref if isinstance(ref, uuid.UUID) else _as_uuid(ref)
        query = select(Assistant).where(col(Assistant.is_secretary))
        if sec_id is not None:
            query = query.where(col(Assistant.id) == sec_id)
        else:
            query = query.where(col(Assistant.name) == ref)
        if lock:
            query = query.with_for_update()
        found = session.scalars(query).one_or_none()
        if found is None:
            raise UnknownSecretary(
                f"no secretary {str(ref)!r}; see `secretaries list --all` for the catalog"
            )
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
            raise UnknownUser(f"no user {ref}; register it with `secretaries users add`")
        if len(found) > 1:
            raise Conflict(f"several users are named {ref}; use the Telegram id instead")
        return found[0]

    def _user(self, session: Session, ref: UserRef, *, lock: bool = False) -> TelegramUser:
        query = select(TelegramUser).where(self._user_condition(ref))
        if lock:
            query = query.with_for_update()
        return self._one_user(session.scalars(query.limit(2)).all(), ref)

    def _active_secretary(self, session: Session, ref: str | uuid.UUID) -> Assistant:
        secretary = self._secretary(session, ref)
        if not secretary.is_active:
            raise InactiveSecretary(
                f"secretary {secretary.name!r} is inactive; "
                f"run `secretaries activate {secretary.name}` first"
            )
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

    # -- catalog ---------------------------------------------------------------------------

    def get_secretary(self, ref: str | uuid.UUID) -> Assistant:
        """The secretary named `ref` (or with that UUID), active or not."""
        return self._read(lambda s: self._secretary(s, ref))

    def secretary_detail(self, ref: str | uuid.UUID) -> SecretaryDetail:
        """The secretary with its prompt and its number of users."""

        def work(session: Session) -> SecretaryDetail:
            secretary = self._secretary(session, ref)
            users = self._user_counts(session, [secretary.id]).get(secretary.id, 0)
            return SecretaryDetail.of(secretary, users)

        return self._read(work)

    def list_secretaries(self, *, include_inactive: bool = False) -> list[SecretaryOut]:
        """The catalog ordered by name, each with its count of users."""

        def work(session: Session) -> list[SecretaryOut]:
            query = select(Assistant).where(col(Assistant.is_secretary))
            if not include_inactive:
                query = query.where(col(Assistant.is_active))
            rows = session.scalars(query.order_by(col(Assistant.name))).all()
            counts = self._user_counts(session)
            return [SecretaryOut.of(row, counts.get(row.id, 0)) for row in rows]

        return self._read(work)

    def create_secretary(self, data: AssistantCreate) -> Assistant:
        """Add a secretary; with `is_default` it replaces the current default."""
        _check_secretary_fields(data.name, data.model, data.prompt, data.description)

        def work(session: Session) -> Assistant:
            _refuse_taken_name(session, data.name)
            now = self.clock()
            if data.is_default:
                _clear_default(session, now)
            secretary = Assistant(
                **data.model_dump(exclude={"is_default"}),
                is_default=data.is_default,
                created_at=now,
                updated_at=now,
            )
            session.add(secretary)
            session.flush()
            return secretary

        return self._write(work, conflict=f"a secretary named {data.name!r} already exists")

    def update_secretary(self, ref: str | uuid.UUID, changes: AssistantUpdate) -> Change:
        """Apply `changes`; `params` merge into the old ones (a `None` value removes a key).

        `version` goes up by one when the model, the prompt or the params really change.
        """

        def work(session: Session) -> Change:
            secretary = self._secretary(session, ref, lock=True)
            new: dict[str, Any] = {}
            for field in ("name", "description", "model", "prompt"):
                value = getattr(changes, field)
                if value is not None and value != getattr(secretary, field):
                    new[field] = value
            if changes.params is not None:
                merged = {**secretary.params, **changes.params}
                merged = {k: v for k, v in merged.items() if v is not None}
                if merged != secretary.params:
                    new["params"] = merged
            if not new:
                return Change(secretary, changed=False)
            # Only what changes is checked: older rows that break today's rules keep working.
            _check_secretary_fields(
                new.get("name"),
                new.get("model", secretary.model),
                new.get("prompt"),
                new.get("description"),
            )
            if "name" in new:
                _refuse_taken_name(session, new["name"], besides=secretary.id)
            if new.keys() & {"model", "prompt", "params"}:
                new["version"] = secretary.version + 1
            for field, value in new.items():
                setattr(secretary, field, value)
            secretary.updated_at = self.clock()
            session.flush()
            return Change(secretary, changed=True)

        return self._write(work, conflict="the secretary changed concurrently; try again")

    def set_default(self, ref: str | uuid.UUID) -> Change:
        """Make `ref` the one default secretary."""

        def work(session: Session) -> Change:
            secretary = self._active_secretary(session, ref)
            if secretary.is_default:
                return Change(secretary, changed=False)
            now = self.clock()
            _clear_default(session, now)
            secretary.is_default = True
            secretary.updated_at = now
            session.flush()
            return Change(secretary, changed=True)

        return self._write(work, conflict="the default changed concurrently; try again")

    def deactivate(
        self, ref: str | uuid.UUID, *, reassign_to: str | uuid.UUID | None = None
    ) -> Change:
        """Deactivate a secretary that is not the default; optionally move its users first.

        Without `reassign_to` its users keep their links and fall back to the default.
        """

        def work(session: Session) -> Change:
            secretary = self._secretary(session, ref, lock=True)
            if secretary.is_default:
                raise Conflict(
                    f"{secretary.name!r} is the default secretary; "
                    "make another one the default first (`secretaries set-default SEC`)"
                )
            moved = 0
            now = self.clock()
            if reassign_to is not None:
                target = self._active_secretary(session, reassign_to)
                if target.id == secretary.id:
                    raise Conflict("cannot reassign a secretary's users to itself")
                moved = linksql.move_links(session.connection(), secretary.id, target.id, now)
            if not secretary.is_active:
                return Change(secretary, changed=False, moved_users=moved)
            secretary.is_active = False
            secretary.updated_at = now
            session.flush()
            return Change(secretary, changed=True, moved_users=moved)

        change = self._write(work, conflict="links changed concurrently; try again")
        if change.changed:
            self._changed("deactivated", change.secretary.id)
        return change

    def activate(self, ref: str | uuid.UUID) -> Change:
        """Make a secretary available again."""

        def work(session: Session) -> Change:
            secretary = self._secretary(session, ref, lock=True)
            if secretary.is_active:
                return Change(secretary, changed=False)
            secretary.is_active = True
            secretary.updated_at = self.clock()
            session.flush()
            return Change(secretary, changed=True)

        return self._write(work, conflict="the secretary changed concurrently; try again")

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
        validate_telegram_id(telegram_id)
        name = normalize_username(username)

        def work(session: Session) -> Registration:
            user = session.scalars(
                select(TelegramUser).where(col(TelegramUser.telegram_id) == telegram_id)
            ).one_or_none()
            now = self.clock()
            if user is not None and (name is None or name == user.username):
                return Registration(user, "unchanged")
            moved_from = _take_username(session, name, telegram_id, now) if name else None
            if user is None:
                user = TelegramUser(
                    telegram_id=telegram_id, username=name, created_at=now, updated_at=now
                )
                session.add(user)
                session.flush()
                return Registration(user, "created", moved_from)
            user.username = name
            user.updated_at = now
            session.flush()
            return Registration(user, "updated", moved_from)

        try:
            found = self._write(work, conflict="", event="user", telegram_id=telegram_id)
        except Conflict:
            # Another process registered the same id between our read and insert.
            found = self._write(
                work,
                conflict=f"user {telegram_id} changed concurrently; try again",
                event="user",
                telegram_id=telegram_id,
            )
        if found.username_moved_from is not None:
            self._changed("user", telegram_id=found.username_moved_from)
        return found

    def erase_user_rows(self, user_ref: UserRef) -> tuple[int, int, int]:
        """Delete the user row, every link and all usage in one transaction.

        Returns (telegram id, links deleted, usage rows deleted). Contexts live in the
        context store: `admin.erase_user` removes them around this call.
        """
        from secretaries_core.usage import UsageBook

        def work(session: Session) -> tuple[int, int, int]:
            user = self._user(session, user_ref, lock=True)
            conn = session.connection()
            links = conn.execute(
                delete(linksql.LINK).where(linksql.LINK.c.user_id == user.id),
                execution_options={"preserve_rowcount": True},
            ).rowcount
            usage_rows = UsageBook.erase_user(conn, user.telegram_id)
            conn.execute(delete(TELEGRAMUSER_TABLE).where(TELEGRAMUSER_TABLE.c.id == user.id))
            return user.telegram_id, int(links or 0), usage_rows

        with session_scope(self.engine, write=True) as session:
            result = work(session)
        self._changed("user", telegram_id=result[0])
        return result

    def delete_secretary(self, ref: str | uuid.UUID) -> Assistant:
        """Delete a secretary that no link ever referenced (otherwise: deactivate it)."""

        def work(session: Session) -> Assistant:
            secretary = self._secretary(session, ref, lock=True)
            if secretary.is_default:
                raise Conflict(
                    f"{secretary.name!r} is the default; make another secretary the default "
                    "first (`secretaries set-default SEC`)"
                )
            used = session.execute(
                select(func.count())
                .select_from(linksql.LINK)
                .where(linksql.LINK.c.secretary_id == secretary.id)
            ).scalar_one()
            if used:
                raise Conflict(
                    f"{secretary.name!r} is in {used} link(s) of users' history and cannot be "
                    f"deleted; run `secretaries deactivate {secretary.name}` instead"
                )
            session.delete(secretary)
            session.flush()
            return secretary

        deleted = self._write(work, conflict="the secretary changed concurrently; try again")
        self._changed("deactivated", deleted.id)
        return deleted

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
        from secretaries_core.usage.quotas import PARAM_MESSAGES, PARAM_TOKENS, Quotas

        unknown = set(changes) - {PARAM_MESSAGES, PARAM_TOKENS}
        if unknown:
            raise InvalidInput(f"unknown limit(s): {', '.join(sorted(unknown))}")
        for key, value in changes.items():
            top = 2**31 - 1 if key == PARAM_MESSAGES else 2**62
            if value is not None and (isinstance(value, bool) or not 0 <= value <= top):
                raise InvalidInput(f"{key} must be a whole number from 0 to {top}, got {value!r}")

        def work(session: Session) -> tuple[int, Limits]:
            user = self._user(session, user_ref, lock=True)
            conn = session.connection()
            current = Quotas.read_overrides(conn, user.telegram_id)
            merged = Limits(
                changes.get(PARAM_MESSAGES, current.messages_per_day),
                changes.get(PARAM_TOKENS, current.tokens_per_day),
            )
            Quotas.write_overrides(conn, self.engine, user.telegram_id, merged)
            return user.telegram_id, merged

        return self._read_write_user(work)[1]

    def _read_write_user(self, work: Callable[[Session], tuple[int, T]]) -> tuple[int, T]:
        with session_scope(self.engine, write=True) as session:
            telegram_id, result = work(session)
        self._changed("user", telegram_id=telegram_id)
        return telegram_id, result

    def import_users(self, rows: list[UserRow]) -> ImportOut:
        """Register many users in one transaction: new ones inserted, others updated or kept."""

        def work(session: Session) -> ImportOut:
            conn = session.connection()
            user = linksql.USER
            existing: dict[int, str | None] = {}
            ids = [row.telegram_id for row in rows]
            for start in range(0, len(ids), LOOKUP_CHUNK):
                chunk = ids[start : start + LOOKUP_CHUNK]
                found = conn.execute(
                    select(user.c.telegram_id, user.c.username).where(user.c.telegram_id.in_(chunk))
                )
                existing.update((tid, name) for tid, name in found)
            now = self.clock()
            fresh = [
                {
                    "telegram_id": r.telegram_id,
                    "username": r.username,
                    "created_at": now,
                    "updated_at": now,
                }
                for r in rows
                if r.telegram_id not in existing
            ]
            renamed = [
                {"tid": r.telegram_id, "uname": r.username}
                for r in rows
                if r.telegram_id in existing
                and r.username is not None
                and r.username != existing[r.telegram_id]
            ]
            if fresh:
                conn.execute(insert(user), fresh)
            if renamed:
                conn.execute(
                    update(user)
                    .where(user.c.telegram_id == bindparam("tid"))
                    .values(username=bindparam("uname"), updated_at=now),
                    renamed,
                )
            return ImportOut(
                created=len(fresh),
                updated=len(renamed),
                unchanged=len(rows) - len(fresh) - len(renamed),
            )

        return self._write(
            work, conflict="users were added concurrently; run the import again", event="user"
        )

    def list_users(self, *, secretary: str | uuid.UUID | None = None) -> list[UserListItem]:
        """Users by Telegram id, each with the secretary of their active link (if any)."""

        def work(session: Session) -> list[UserListItem]:
            link, user = linksql.LINK, linksql.USER
            sec = ASSISTANT_TABLE
            query = (
                select(user.c.telegram_id, user.c.username, user.c.created_at, sec.c.name)
                .select_from(user)
                .outerjoin(link, (link.c.user_id == user.c.id) & link.c.is_active)
                .outerjoin(sec, sec.c.id == link.c.secretary_id)
                .order_by(user.c.telegram_id)
            )
            if secretary is not None:
                query = query.where(link.c.secretary_id == self._secretary(session, secretary).id)
            return [
                UserListItem(telegram_id=tid, username=name, created_at=created, secretary=sec_name)
                for tid, name, created, sec_name in session.execute(query)
            ]

        return self._read(work)

    # -- links -----------------------------------------------------------------------------

    def assign(self, user_ref: UserRef, secretary_ref: str | uuid.UUID) -> AssignOut:
        """Switch the user to the secretary: close the old link, open a new one, atomically.

        Assigning the current secretary again changes nothing. Racing writers are
        serialised by a row lock (PostgreSQL) or the write lock (SQLite); if the partial
        unique index still rejects one, it is retried before reporting a conflict.
        """

        def work(session: Session) -> AssignOut:
            user = self._user(session, user_ref, lock=True)
            secretary = self._active_secretary(session, secretary_ref)
            current = session.execute(
                select(UserSecretaryLink, col(Assistant.name))
                .join(Assistant, col(Assistant.id) == col(UserSecretaryLink.secretary_id))
                .where(col(UserSecretaryLink.user_id) == user.id, col(UserSecretaryLink.is_active))
            ).one_or_none()
            previous = current[1] if current else None
            if current is not None and current[0].secretary_id == secretary.id:
                return AssignOut(
                    user=UserOut.of(user),
                    secretary=secretary.name,
                    previous=previous,
                    changed=False,
                )
            now = self.clock()
            session.execute(
                update(UserSecretaryLink)
                .where(col(UserSecretaryLink.user_id) == user.id, col(UserSecretaryLink.is_active))
                .values(is_active=False, updated_at=now)
            )
            assert user.id is not None
            session.add(
                UserSecretaryLink(
                    user_id=user.id,
                    secretary_id=secretary.id,
                    is_active=True,
                    created_at=now,
                    updated_at=now,
                )
            )
            session.flush()
            return AssignOut(
                user=UserOut.of(user), secretary=secretary.name, previous=previous, changed=True
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
        by_name = not isinstance(user_ref, int)
        value = (normalize_username(str(user_ref)) or "").lower() if by_name else user_ref
        query = _resolution_query(by_name)
        user, mine, fallback, mine_users, default_users = self._one_user(
            session.execute(query, {"ref": value}).all(), user_ref
        )
        if mine is not None and mine.is_active:
            return Resolution(user, mine, "assigned"), mine_users
        if fallback is None:
            raise NoDefaultSecretary(self._no_secretary_hint(session))
        source: Source = "default" if mine is None else "fallback"
        return Resolution(user, fallback, source), default_users

    @staticmethod
    def _no_secretary_hint(session: Session) -> str:
        # What to do depends on the catalog: on a first run there is nothing to set.
        active = session.scalars(
            select(col(Assistant.name)).where(col(Assistant.is_active)).limit(1)
        ).first()
        if active is None:
            return (
                "no secretary available: the catalog has no active secretary; create one with "
                "`secretaries create NAME --model MODEL --prompt TEXT --default`"
            )
        return (
            "no secretary available: the user has no active secretary and there is no "
            f"default; run `secretaries set-default SEC` (e.g. {active})"
        )

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
            rows = session.execute(
                select(UserSecretaryLink, col(Assistant.name))
                .join(Assistant, col(Assistant.id) == col(UserSecretaryLink.secretary_id))
                .where(col(UserSecretaryLink.user_id) == user.id)
                .order_by(
                    col(UserSecretaryLink.created_at).desc(),
                    col(UserSecretaryLink.is_active).desc(),
                )
            )
            return [
                LinkOut(
                    secretary_id=link.secretary_id,
                    secretary=name,
                    is_active=link.is_active,
                    created_at=link.created_at,
                    updated_at=link.updated_at,
                )
                for link, name in rows
            ]

        return self._read(work)

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


def _take_username(session: Session, name: str, telegram_id: int, now: datetime) -> int | None:
    """Clear `name` from any other user holding it; return that user's Telegram id."""
    holder = session.scalars(
        select(TelegramUser).where(
            func.lower(col(TelegramUser.username)) == name.lower(),
            col(TelegramUser.telegram_id) != telegram_id,
        )
    ).first()
    if holder is None:
        return None
    holder.username = None
    holder.updated_at = now
    session.flush()
    return holder.telegram_id


def _refuse_taken_name(session: Session, name: str, besides: uuid.UUID | None = None) -> None:
    # Case-insensitively: `Alice` and `alice` would be the same secretary to a person.
    query = select(col(Assistant.name)).where(func.lower(col(Assistant.name)) == name.lower())
    if besides is not None:
        query = query.where(col(Assistant.id) != besides)
    taken = session.scalars(query).first()
    if taken is not None:
        raise Conflict(f"a secretary named {taken!r} already exists")


def _clear_default(session: Session, now: datetime) -> None:
    session.execute(
        update(Assistant).where(col(Assistant.is_default)).values(is_default=False, updated_at=now)
    )


NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Control characters other than tab, newline and carriage return (prompt files use CRLF).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def check_name(name: str) -> None:
    """A new secretary name: 1-64 letters, digits, `-`, `_`, `.` (not a UUID)."""
    if not NAME_RE.fullmatch(name):
        raise InvalidInput(
            f"invalid secretary name {name!r}: use 1 to 64 letters, digits, '-', '_' or '.'"
        )
    if _as_uuid(name) is not None:
        raise InvalidInput("a secretary's name cannot look like a UUID")


def check_text(field: str, value: str) -> None:
    """Descriptions and prompts: any text but control characters (tab and newlines are fine)."""
    found = _CONTROL.search(value)
    if found:
        raise InvalidInput(
            f"the {field} contains the control character U+{ord(found.group()):04X}; "
            "only tab and newlines are allowed"
        )


def _check_secretary_fields(
    name: str | None, model: str, prompt: str | None, description: str | None = ""
) -> None:
    """Check the fields being set (None: not being changed)."""
    if name is not None:
        check_name(name)
    for field, value in (("prompt", prompt), ("description", description)):
        if value is not None:
            check_text(field, value)
    if "\x00" in model:
        raise InvalidInput("text fields cannot contain NUL characters")
    if not model.strip():
        raise InvalidInput("a secretary needs a model")
    validate_model(model)
    if prompt is not None and not prompt.strip():
        raise InvalidInput("a secretary needs a non-empty prompt")
