"""`ServingCatalog`: what the message path reads and writes of the catalog, on Core alone.

The orchestrator's stages need a few calls of the catalog: resolve a user's secretary and
the version served, register an unknown user, look up a secretary (an assistant asked as
a tool, a context's owner), a provider, a reply's version, the running rollout and its
counts, roll a rollout back, list versions and keep an eval. Here they run on SQLAlchemy
Core (the `catalog.reads` views, `catalog.writes`), without the ORM, SQLModel or pydantic:
a one-shot `secretaries chat` or `eval` pays only for what it uses. `SecretaryRegistry` is
a `ServingCatalog` with the admin operations on top and runs these same methods, so each
has one implementation; its change notification lives here too.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection, Engine, select

from secretaries_core.catalog import writes
from secretaries_core.catalog.reads import (
    COUNT,
    REPLY_REF,
    ROLLOUT,
    SECRETARY,
    VersionInfo,
    chosen_side,
    resolution_rows,
    side_facts,
    version_list,
)
from secretaries_core.catalog.reads import SecretaryFacts as SecretaryFacts
from secretaries_core.catalog.reads import Served as Served
from secretaries_core.catalog.reads import Source as Source
from secretaries_core.catalog.reads import VersionSource as VersionSource
from secretaries_core.catalog.reads import served as served
from secretaries_core.catalog.refs import UserRef
from secretaries_core.catalog.rollout_writes import Rollout, end_rollout, row_rollout, running
from secretaries_core.errors import NoDefaultSecretary
from secretaries_core.plumbing.timeutil import utcnow

if TYPE_CHECKING:
    from secretaries_core.catalog.reads import EvalRecord
    from secretaries_core.llm.model_names import Provider

T = TypeVar("T")
ChangeListener = Callable[[str, "uuid.UUID | None", "int | None"], None]
"""`listener(event, secretary_id, telegram_id)`, called after a committed change."""


@dataclass(frozen=True)
class UserSecretary:
    """The secretary a user gets right now, and why (the message path's resolution)."""

    user_id: int
    telegram_id: int
    secretary: SecretaryFacts
    source: Source


def no_secretary(conn: Any) -> NoDefaultSecretary:
    """The refusal when nothing can answer a user; what to do depends on the catalog."""
    active = conn.execute(select(SECRETARY.c.name).where(SECRETARY.c.is_active).limit(1)).scalar()
    if active is None:
        return NoDefaultSecretary(
            "no secretary available: the catalog has no active secretary",
            hint=(
                "; create one with `secretaries create NAME --model MODEL --prompt TEXT --default`"
            ),
        )
    return NoDefaultSecretary(
        "no secretary available: the user has no active secretary and there is no default",
        hint=f"; run `secretaries set-default SEC` (e.g. {active})",
    )


def resolve(conn: Any, user_ref: UserRef) -> UserSecretary:
    """The user's secretary (their active link's, else the default) in one query."""
    rows = resolution_rows(conn, user_ref)
    if not rows:
        raise writes.unknown_user(user_ref)
    if len(rows) > 1:
        raise writes.several_users(user_ref)
    row = rows[0]
    chosen = chosen_side(row)
    if chosen is None:
        raise no_secretary(conn)
    side, source = chosen
    return UserSecretary(row.id, row.telegram_id, side_facts(row, side), source)


def reply_version(conn: Any, telegram_id: int, message_id: int) -> tuple[uuid.UUID, int] | None:
    """(secretary id, version) of the reply the bot sent as `message_id`, if known."""
    row = conn.execute(
        select(REPLY_REF.c.secretary_id, REPLY_REF.c.version).where(
            REPLY_REF.c.telegram_id == telegram_id, REPLY_REF.c.message_id == message_id
        )
    ).first()
    return (row.secretary_id, int(row.version)) if row is not None else None


def running_rollout(conn: Any, rollout_id: uuid.UUID) -> Rollout | None:
    """The rollout if it is still running."""
    row = conn.execute(
        select(ROLLOUT).where(ROLLOUT.c.id == rollout_id, ROLLOUT.c.state == "running")
    ).first()
    return row_rollout(row) if row is not None else None


def rollout_counts(conn: Any, rollout: Rollout) -> dict[int, Any]:
    """Each version's counts over the rollout's life (rows by version number)."""
    rows = conn.execute(
        select(COUNT).where(
            COUNT.c.secretary_id == rollout.secretary_id, COUNT.c.period == rollout.id.hex
        )
    )
    return {row.version: row for row in rows}


class ServingCatalog:
    """The message path's catalog calls, each in its own Core transaction on `engine`."""

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
        without one), `provider`. A `telegram_id` of None means "possibly every user".
        """
        self._listeners.append(listener)

    def _changed(
        self, event: str, secretary_id: uuid.UUID | None = None, telegram_id: int | None = None
    ) -> None:
        for listener in self._listeners:
            listener(event, secretary_id, telegram_id)

    @contextmanager
    def _core(self, *, write: bool = False, conflict: str | None = None) -> Iterator[Connection]:
        from secretaries_core.plumbing.db import transaction

        with transaction(self.engine, write=write, conflict=conflict) as conn:
            yield conn

    # -- the message path's calls --------------------------------------------------------

    def resolve_served(self, user_ref: UserRef) -> tuple[UserSecretary, Served]:
        """The user's secretary, why, and the version of it they get (pin, rollout, live)."""
        with self._core() as conn:
            found = resolve(conn, user_ref)
            return found, served(conn, found.user_id, found.telegram_id, found.secretary)

    def add_user(self, telegram_id: int, username: str | None = None) -> object:
        """Register a user; an existing one keeps their row and gets the new username if given."""
        return self._register(telegram_id, username)

    def _register(self, telegram_id: int, username: str | None) -> writes.Registered:
        done = writes.register(self.engine, telegram_id, username, self.clock())
        self._changed("user", telegram_id=telegram_id)
        if done.username_moved_from is not None:
            # Their username moved to this user: what was cached for them is stale too.
            self._changed("user", telegram_id=done.username_moved_from)
        return done

    def get_secretary(self, ref: str | uuid.UUID) -> SecretaryFacts:
        """The secretary named `ref` (or with that UUID), active or not."""
        with self._core() as conn:
            found: SecretaryFacts = writes.secretary(conn, ref)
            return found

    def provider(self, name: str) -> Provider | None:
        """One named provider, or None."""
        from secretaries_core.llm.model_names import Provider
        from secretaries_core.llm.providers_table import PROVIDER_TABLE

        with self._core() as conn:
            row = conn.execute(select(PROVIDER_TABLE).where(PROVIDER_TABLE.c.name == name)).first()
        return Provider(row.name, row.base_url, row.api_key_env) if row else None

    def reply_version(self, telegram_id: int, message_id: int) -> tuple[uuid.UUID, int] | None:
        """(secretary id, version) of the reply the bot sent as `message_id`, if known."""
        with self._core() as conn:
            return reply_version(conn, telegram_id, message_id)

    def running_rollout(self, rollout_id: uuid.UUID) -> Rollout | None:
        """The rollout if it is still running."""
        with self._core() as conn:
            return running_rollout(conn, rollout_id)

    def rollout_counts(self, rollout: Rollout) -> dict[int, Any]:
        """Each version's counts over the rollout's life (rows by version number)."""
        with self._core() as conn:
            return rollout_counts(conn, rollout)

    def rollout_of(self, secretary_id: uuid.UUID, version: int) -> uuid.UUID | None:
        """The running rollout of the secretary, if `version` is one of its two sides."""
        with self._core() as conn:
            found = running(conn, secretary_id)
        if found is None or version not in (found.live_version, found.candidate_version):
            return None
        return found.id

    def roll_back_rollout(self, rollout_id: uuid.UUID, reason: str) -> bool:
        """End a running rollout as `rolled_back` (once, whoever calls it first); True if so."""
        with self._core(write=True, conflict="the rollout changed meanwhile") as conn:
            found = running_rollout(conn, rollout_id)
            ended = found is not None and end_rollout(
                conn, found.secretary_id, "rolled_back", reason, self.clock()
            )
        if ended:
            self._changed("catalog")
        return ended

    def versions(self, ref: str | uuid.UUID) -> list[VersionInfo]:
        """Every version of SEC, newest first, with its state."""
        # A write: a secretary made before versions existed gets its live row now.
        with self._core(write=True) as conn:
            secretary = writes.secretary(conn, ref)
            writes.ensure_live_row(conn, secretary, self.clock())
            return version_list(conn, secretary.id, secretary.version)

    def record_eval(
        self,
        secretary_id: uuid.UUID,
        version: int,
        *,
        passed: int,
        failed: int,
        failures: list[str],
        content: tuple[str, str, dict[str, Any]] | None = None,
    ) -> EvalRecord:
        """Keep `version`'s latest eval (replacing the one before); version 0 with
        `content` (model, prompt, params): content not stored as a version yet."""
        from secretaries_core.catalog.eval_records import record_eval

        with self._core(write=True, conflict="the eval was recorded concurrently") as conn:
            return record_eval(
                conn,
                secretary_id,
                version,
                passed=passed,
                failed=failed,
                failures=failures,
                content=content,
                now=self.clock(),
            )
