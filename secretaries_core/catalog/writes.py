"""The catalog's everyday writes on SQLAlchemy Core alone: assign, pin, unpin, the default,
(de)activation.

An operator's one-shot command paid for importing the ORM, SQLModel and pydantic (0.45 s
of CPU against 0.19 s for `import sqlalchemy`) to run two or three statements. These
writes run on the Core table views of `catalog.reads` and take a `Connection` or an ORM
`Session` inside the caller's write transaction: the registry runs them in its session
(and tells its listeners), the CLI's quick path on a bare connection — one
implementation of each write and each refusal. Errors are the contract's typed errors.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import Connection, bindparam, func, insert, select, update

from secretaries_core.catalog.reads import LINK, PIN, SECRETARY, USER, VERSION
from secretaries_core.catalog.refs import UserRef, normalize_username
from secretaries_core.errors import (
    Conflict,
    InactiveSecretary,
    NotASecretary,
    NotFound,
    UnknownSecretary,
    UnknownUser,
)
from secretaries_core.plumbing.ids import uuid7

if TYPE_CHECKING:
    from secretaries_core.catalog.users_csv import UserRow
    from secretaries_core.usage.quotas import Limits


def unknown_secretary(ref: str | uuid.UUID) -> UnknownSecretary:
    """The refusal for a name or id that names no secretary."""
    return UnknownSecretary(
        f"no secretary {str(ref)!r}", hint="; see `secretaries list --all` for the catalog"
    )


def unknown_user(ref: UserRef) -> UnknownUser:
    """The refusal for a reference that names no registered user."""
    return UnknownUser(f"no user {ref}", hint="; register it with `secretaries users add`")


def several_users(ref: UserRef) -> Conflict:
    """The refusal for a username several users share."""
    return Conflict(f"several users are named {ref}; use the Telegram id instead")


def unusable(name: str, *, is_secretary: bool, is_active: bool) -> Exception | None:
    """Why users cannot be given this secretary (None when they can)."""
    if not is_secretary:
        return NotASecretary(
            f"{name!r} is an assistant users cannot pick (created with "
            "--no-secretary); it is only called as a tool"
        )
    if not is_active:
        return InactiveSecretary(
            f"secretary {name!r} is inactive", hint=f"; run `secretaries activate {name}` first"
        )
    return None


def as_uuid(ref: str | uuid.UUID) -> uuid.UUID | None:
    """`ref` as a UUID when it is one (or parses as one), else None."""
    if isinstance(ref, uuid.UUID):
        return ref
    try:
        return uuid.UUID(ref)
    except ValueError:
        return None


def secretary(conn: Any, ref: str | uuid.UUID, *, lock: bool = False) -> Any:
    """The secretary row `ref` names (by id when it parses as one, else by name)."""
    sec_id = as_uuid(ref)
    query = select(SECRETARY).where(
        SECRETARY.c.id == sec_id if sec_id is not None else SECRETARY.c.name == ref
    )
    if lock:
        query = query.with_for_update()
    found = conn.execute(query).one_or_none()
    if found is None:
        raise unknown_secretary(ref)
    return found


def active_secretary(conn: Any, ref: str | uuid.UUID) -> Any:
    """A secretary row users can be given (assign, the default, a move)."""
    found = secretary(conn, ref)
    refused = unusable(found.name, is_secretary=found.is_secretary, is_active=found.is_active)
    if refused is not None:
        raise refused
    return found


def user(conn: Any, ref: UserRef, *, lock: bool = False) -> Any:
    """The one user row `ref` names: a Telegram id, or a username in any case."""
    if isinstance(ref, int):
        who = USER.c.telegram_id == ref
    else:
        who = func.lower(USER.c.username) == (normalize_username(ref) or "").lower()
    query = select(USER).where(who).limit(2)
    if lock:
        query = query.with_for_update()
    rows = conn.execute(query).all()
    if not rows:
        raise unknown_user(ref)
    if len(rows) > 1:
        raise several_users(ref)
    return rows[0]


# -- versions and pins --------------------------------------------------------------------


def add_version(
    conn: Any,
    row: Any,
    version: int,
    state: str,
    note: str | None,
    now: datetime,
    *,
    model: str | None = None,
    prompt: str | None = None,
    params: dict[str, Any] | None = None,
) -> None:
    """Store version `version` of the secretary `row` (its content unless given); a live
    one retires the version live so far."""
    if state == "live":
        conn.execute(
            update(VERSION)
            .where(VERSION.c.secretary_id == row.id, VERSION.c.state == "live")
            .values(state="retired")
        )
    conn.execute(
        VERSION.insert().values(
            secretary_id=row.id,
            version=version,
            model=model if model is not None else row.model,
            prompt=prompt if prompt is not None else row.prompt,
            params=dict(params if params is not None else row.params),
            note=note,
            state=state,
            created_at=now,
        )
    )


def make_live(
    conn: Any, sec_id: uuid.UUID, number: int, note: str | None, now: datetime, **content: Any
) -> None:
    """`content` (model, prompt, params) becomes the secretary's live content as version
    `number`, stored with `note`; the version live so far retires."""
    conn.execute(
        update(SECRETARY)
        .where(SECRETARY.c.id == sec_id)
        .values(**content, version=number, updated_at=now)
    )
    add_version(conn, secretary(conn, sec_id), number, "live", note, now)


def ensure_live_row(conn: Any, row: Any, now: datetime) -> None:
    """A secretary made before versions existed (or by hand) gets its live row now."""
    found = conn.execute(
        select(VERSION.c.version).where(
            VERSION.c.secretary_id == row.id, VERSION.c.version == row.version
        )
    ).first()
    if found is None:
        add_version(conn, row, row.version, "live", None, now)


def version_row(conn: Any, row: Any, version: int, now: datetime) -> Any:
    """Version `version` of the secretary `row`; `NotFound` when it has none."""
    if version == row.version:
        ensure_live_row(conn, row, now)
    found = conn.execute(
        select(VERSION).where(VERSION.c.secretary_id == row.id, VERSION.c.version == version)
    ).first()
    if found is None:
        raise NotFound(
            f"secretary {row.name!r} has no version {version}",
            hint=f"; see `secretaries versions {row.name}`",
        )
    return found


def pin(conn: Any, user_ref: UserRef, ref: str | uuid.UUID, version: int, now: datetime) -> int:
    """USER gets VERSION of SEC whatever is live or rolling out; their Telegram id."""
    person, found = user(conn, user_ref), secretary(conn, ref)
    version_row(conn, found, version, now)
    mine = (PIN.c.user_id == person.id) & (PIN.c.secretary_id == found.id)
    conn.execute(PIN.delete().where(mine))
    conn.execute(
        PIN.insert().values(
            user_id=person.id, secretary_id=found.id, version=version, created_at=now
        )
    )
    return int(person.telegram_id)


def unpin(conn: Any, user_ref: UserRef, ref: str | uuid.UUID) -> tuple[int, bool]:
    """Remove USER's pin on SEC: (their Telegram id, whether there was one)."""
    person, found = user(conn, user_ref), secretary(conn, ref)
    done = conn.execute(
        PIN.delete().where(PIN.c.user_id == person.id, PIN.c.secretary_id == found.id)
    )
    return int(person.telegram_id), bool(done.rowcount)


# -- links --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Assigned:
    """What `assign` did (SPEC's `assign --json` document is `doc()`)."""

    telegram_id: int
    username: str | None
    secretary: str
    previous: str | None
    changed: bool

    def doc(self) -> dict[str, Any]:
        """`assign --json`."""
        return {
            "user": {"telegram_id": self.telegram_id, "username": self.username},
            "secretary": self.secretary,
            "previous": self.previous,
            "changed": self.changed,
        }


def assign(
    conn: Any, user_ref: UserRef, ref: str | uuid.UUID, clock: Callable[[], datetime]
) -> Assigned:
    """Switch the user to the secretary: close the active link, open a new one.

    Racing writers are serialised by the row lock (PostgreSQL) or the write lock
    (SQLite); the caller retries when the one-active-link index still rejects one.
    The clock is read once the lock is held, so the newest link is the active one.
    """
    person = user(conn, user_ref, lock=True)
    now = clock()
    target = active_secretary(conn, ref)
    current = conn.execute(
        select(LINK.c.secretary_id, SECRETARY.c.name)
        .join(SECRETARY, SECRETARY.c.id == LINK.c.secretary_id)
        .where(LINK.c.user_id == person.id, LINK.c.is_active)
    ).one_or_none()
    previous = current.name if current is not None else None
    changed = current is None or current.secretary_id != target.id
    if changed:
        conn.execute(
            update(LINK)
            .where(LINK.c.user_id == person.id, LINK.c.is_active)
            .values(is_active=False, updated_at=now)
        )
        conn.execute(
            LINK.insert().values(
                id=uuid7(),
                user_id=person.id,
                secretary_id=target.id,
                is_active=True,
                created_at=now,
                updated_at=now,
            )
        )
    return Assigned(person.telegram_id, person.username, target.name, previous, changed)


# -- the default and (de)activation -------------------------------------------------------


@dataclass(frozen=True)
class Changed:
    """A secretary after a change, and whether anything changed."""

    id: uuid.UUID
    name: str
    changed: bool
    moved_users: int = 0


def _touch(conn: Any, sec_id: uuid.UUID, now: datetime, **values: Any) -> None:
    conn.execute(update(SECRETARY).where(SECRETARY.c.id == sec_id).values(**values, updated_at=now))


def clear_default(conn: Any, now: datetime) -> None:
    """No secretary is the default any more (inside a transaction that names the next)."""
    conn.execute(
        update(SECRETARY).where(SECRETARY.c.is_default).values(is_default=False, updated_at=now)
    )


def set_default(conn: Any, ref: str | uuid.UUID, now: datetime) -> Changed:
    """Make `ref` the one default secretary."""
    found = active_secretary(conn, ref)
    if found.is_default:
        return Changed(found.id, found.name, changed=False)
    clear_default(conn, now)
    _touch(conn, found.id, now, is_default=True)
    return Changed(found.id, found.name, changed=True)


def activate(conn: Any, ref: str | uuid.UUID, now: datetime) -> Changed:
    """Make a secretary available again."""
    found = secretary(conn, ref, lock=True)
    if found.is_active:
        return Changed(found.id, found.name, changed=False)
    _touch(conn, found.id, now, is_active=True)
    return Changed(found.id, found.name, changed=True)


def deactivate(
    conn: Any, ref: str | uuid.UUID, reassign_to: str | uuid.UUID | None, now: datetime
) -> Changed:
    """Deactivate a secretary that is not the default, moving its users first if asked
    (without `reassign_to` they keep their links and fall back to the default)."""
    from secretaries_core.catalog import linksql

    found = secretary(conn, ref, lock=True)
    if found.is_default:
        raise Conflict(
            f"{found.name!r} is the default secretary; make another one the default first",
            hint=" (`secretaries set-default SEC`)",
        )
    moved = 0
    if reassign_to is not None:
        target = active_secretary(conn, reassign_to)
        if target.id == found.id:
            raise Conflict("cannot reassign a secretary's users to itself")
        moved = linksql.move_links(_connection(conn), found.id, target.id, now)
    if not found.is_active:
        return Changed(found.id, found.name, changed=False, moved_users=moved)
    _touch(conn, found.id, now, is_active=False)
    return Changed(found.id, found.name, changed=True, moved_users=moved)


def _connection(conn: Any) -> Connection:
    """The Core connection under an ORM session (or the connection itself)."""
    return conn if isinstance(conn, Connection) else conn.connection()


# Keeps each statement's IN list well below every driver's parameter limit.
LOOKUP_CHUNK = 500


# -- users --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Registered:
    """A registered user's row, what happened, and who held their username before."""

    row: Any  # the user's row after the write (id, telegram_id, username, created_at, …)
    status: Literal["created", "updated", "unchanged"]
    username_moved_from: int | None = None


def register_user(conn: Any, telegram_id: int, name: str | None, now: datetime) -> Registered:
    """Register a user (`name`: a checked username without `@`, or None to keep theirs).

    Telegram usernames are unique at any moment: one another user holds here is stale
    (they changed it on Telegram), so it moves to this user and the other's is cleared.
    """
    row = conn.execute(select(USER).where(USER.c.telegram_id == telegram_id)).one_or_none()
    if row is not None and (name is None or name == row.username):
        return Registered(row, "unchanged")
    moved_from = _take_username(conn, name, telegram_id, now) if name else None
    if row is None:
        conn.execute(
            USER.insert().values(
                telegram_id=telegram_id, username=name, created_at=now, updated_at=now
            )
        )
        status: Literal["created", "updated"] = "created"
    else:
        conn.execute(update(USER).where(USER.c.id == row.id).values(username=name, updated_at=now))
        status = "updated"
    row = conn.execute(select(USER).where(USER.c.telegram_id == telegram_id)).one()
    return Registered(row, status, moved_from)


def register(engine: Any, telegram_id: int, username: str | None, now: datetime) -> Registered:
    """`register_user` in a write transaction of its own (`username` as typed, `@`
    optional); a concurrent registration of the same id is met by trying once more."""
    from secretaries_core.catalog.refs import validate_telegram_id
    from secretaries_core.plumbing.db import transaction

    validate_telegram_id(telegram_id)
    name = normalize_username(username)
    try:
        with transaction(engine, write=True, conflict="") as conn:
            return register_user(conn, telegram_id, name, now)
    except Conflict:
        # Another process registered the same id between our read and our insert.
        changed = f"user {telegram_id} changed concurrently; try again"
        with transaction(engine, write=True, conflict=changed) as conn:
            return register_user(conn, telegram_id, name, now)


def _take_username(conn: Any, name: str, telegram_id: int, now: datetime) -> int | None:
    """Clear `name` from any other user holding it; that user's Telegram id."""
    holder = conn.execute(
        select(USER.c.id, USER.c.telegram_id).where(
            func.lower(USER.c.username) == name.lower(), USER.c.telegram_id != telegram_id
        )
    ).first()
    if holder is None:
        return None
    conn.execute(update(USER).where(USER.c.id == holder.id).values(username=None, updated_at=now))
    return int(holder.telegram_id)


def check_limits(changes: dict[str, int | None]) -> None:
    """`users limit` changes: known keys, whole numbers in range (None removes one)."""
    from secretaries_core.errors import InvalidInput
    from secretaries_core.usage.quotas import PARAM_MESSAGES, PARAM_TOKENS

    unknown = set(changes) - {PARAM_MESSAGES, PARAM_TOKENS}
    if unknown:
        raise InvalidInput(f"unknown limit(s): {', '.join(sorted(unknown))}")
    for key, value in changes.items():
        top = 2**31 - 1 if key == PARAM_MESSAGES else 2**62
        if value is not None and (isinstance(value, bool) or not 0 <= value <= top):
            raise InvalidInput(f"{key} must be a whole number from 0 to {top}, got {value!r}")


def set_limits(
    conn: Any, engine: Any, user_ref: UserRef, changes: dict[str, int | None]
) -> tuple[int, Limits]:
    """Change the user's daily limit overrides (None removes one, so the secretary's or
    the global limit applies again): (their Telegram id, the overrides after it)."""
    from secretaries_core.usage.quotas import PARAM_MESSAGES, PARAM_TOKENS, Limits, Quotas

    check_limits(changes)
    person = user(conn, user_ref, lock=True)
    current = Quotas.read_overrides(conn, person.telegram_id)
    merged = Limits(
        changes.get(PARAM_MESSAGES, current.messages_per_day),
        changes.get(PARAM_TOKENS, current.tokens_per_day),
    )
    Quotas.write_overrides(conn, engine, person.telegram_id, merged)
    return int(person.telegram_id), merged


def import_users(conn: Any, rows: Sequence[UserRow], now: datetime) -> dict[str, int]:
    """Register many users in the caller's transaction: new ones inserted, others updated
    or kept; usernames the file gives move to their new holders. {created, updated,
    unchanged}."""
    existing: dict[int, str | None] = {}
    ids = [row.telegram_id for row in rows]
    for start in range(0, len(ids), LOOKUP_CHUNK):
        chunk = ids[start : start + LOOKUP_CHUNK]
        found = conn.execute(
            select(USER.c.telegram_id, USER.c.username).where(USER.c.telegram_id.in_(chunk))
        )
        existing.update((tid, name) for tid, name in found)
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
    # A user whose own username is in the file keeps it: it is written back below.
    renamed += [
        {"tid": r.telegram_id, "uname": r.username}
        for r in rows
        if r.telegram_id in existing
        and r.username is not None
        and r.username == existing[r.telegram_id]
    ]
    # Usernames the file gives move to their new holders (set-based, per chunk).
    names = sorted({r.username.lower() for r in rows if r.username})
    for start in range(0, len(names), LOOKUP_CHUNK):
        lowered = names[start : start + LOOKUP_CHUNK]
        conn.execute(
            update(USER)
            .where(func.lower(USER.c.username).in_(lowered))
            .values(username=None, updated_at=now)
        )
    if fresh:
        conn.execute(insert(USER), fresh)
    if renamed:
        conn.execute(
            update(USER)
            .where(USER.c.telegram_id == bindparam("tid"))
            .values(username=bindparam("uname"), updated_at=now),
            renamed,
        )
    changed = sum(
        1
        for r in rows
        if r.telegram_id in existing
        and r.username is not None
        and r.username != existing[r.telegram_id]
    )
    return {
        "created": len(fresh),
        "updated": changed,
        "unchanged": len(rows) - len(fresh) - changed,
    }


def erase_user_rows(conn: Any, user_ref: UserRef) -> tuple[int, int, int]:
    """Delete the user row, every link, pin and reply reference, and fold their usage into
    the totals of no user, in the caller's transaction: (telegram id, links deleted, usage
    rows deleted). Contexts live in the context store (`admin.erase_user`)."""
    from sqlalchemy import delete

    from secretaries_core.catalog.reads import REPLY_REF
    from secretaries_core.usage.book import UsageBook

    person = user(conn, user_ref, lock=True)
    links = conn.execute(
        delete(LINK).where(LINK.c.user_id == person.id),
        execution_options={"preserve_rowcount": True},
    ).rowcount
    usage_rows = UsageBook.erase_user(conn, person.telegram_id)
    conn.execute(delete(REPLY_REF).where(REPLY_REF.c.telegram_id == person.telegram_id))
    conn.execute(delete(PIN).where(PIN.c.user_id == person.id))
    conn.execute(delete(USER).where(USER.c.id == person.id))
    return int(person.telegram_id), int(links or 0), usage_rows


def delete_secretary(conn: Any, ref: str | uuid.UUID) -> tuple[uuid.UUID, str]:
    """Delete a secretary no link ever referenced (otherwise: deactivate it), with its
    versions, pins, counts and rollouts: (its id, its name)."""
    from sqlalchemy import delete

    from secretaries_core.catalog.reads import COUNT, ROLLOUT

    found = secretary(conn, ref, lock=True)
    if found.is_default:
        raise Conflict(
            f"{found.name!r} is the default; make another secretary the default first",
            hint=" (`secretaries set-default SEC`)",
        )
    used = conn.execute(
        select(func.count()).select_from(LINK).where(LINK.c.secretary_id == found.id)
    ).scalar_one()
    if used:
        raise Conflict(
            f"{found.name!r} is in {used} link(s) of users' history and cannot be deleted",
            hint=f"; run `secretaries deactivate {found.name}` instead",
        )
    for table in (PIN, COUNT, ROLLOUT, VERSION):
        conn.execute(delete(table).where(table.c.secretary_id == found.id))
    conn.execute(delete(SECRETARY).where(SECRETARY.c.id == found.id))
    return found.id, found.name
