"""Context use cases shared by the CLI and the REST API, returning the SPEC.md shapes.

The results are plain dataclasses whose `doc()` is the SPEC.md JSON document (the REST
API validates it into its pydantic response models): the CLI's one-shot commands print
them without loading pydantic (docs/performance.md, "CLI start-up").
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from secretaries_core.catalog import writes
from secretaries_core.catalog.reads import stamp
from secretaries_core.catalog.refs import UserRef
from secretaries_core.context.base import ContextStore, ProgressCallback
from secretaries_core.plumbing.db import transaction

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from secretaries_core.catalog.registry import SecretaryRegistry
    from secretaries_core.queue.client import Queue
    from secretaries_core.usage.book import UsageReport

    Catalog = SecretaryRegistry | Engine
    """The registry (whose listeners hear of a change), or just its database (the CLI's
    one-shot commands: nobody listens, and the ORM is not loaded)."""


class _Fields:
    """A result whose SPEC.md document is its fields, as they are (JSON types only)."""

    def doc(self) -> dict[str, Any]:
        """The SPEC.md document."""
        found: dict[str, Any] = asdict(self)  # type: ignore[call-overload]  # a dataclass
        return found


@dataclass(frozen=True)
class Counts:
    """Contexts and messages of one secretary."""

    contexts: int
    messages: int


@dataclass(frozen=True)
class ContextStats(_Fields):
    """`contexts stats`: totals and per secretary name."""

    contexts: int
    messages: int
    by_secretary: dict[str, Counts]


@dataclass(frozen=True)
class Message:
    """One stored message."""

    role: str
    content: str
    at: datetime
    metadata: dict[str, Any] | None = None

    def doc(self) -> dict[str, Any]:
        """The SPEC.md document."""
        return {**asdict(self), "at": stamp(self.at)}


@dataclass(frozen=True)
class Context:
    """One context of a user with its messages, oldest first."""

    secretary_id: uuid.UUID
    secretary: str
    last_activity: datetime
    messages: list[Message]

    def doc(self) -> dict[str, Any]:
        """The SPEC.md document."""
        return {
            "secretary_id": str(self.secretary_id),
            "secretary": self.secretary,
            "last_activity": stamp(self.last_activity),
            "messages": [m.doc() for m in self.messages],
        }


@dataclass(frozen=True)
class UserContexts:
    """`contexts show`: a user's contexts."""

    telegram_id: int
    username: str | None
    contexts: list[Context]

    def doc(self) -> dict[str, Any]:
        """The SPEC.md document."""
        return {
            "user": {"telegram_id": self.telegram_id, "username": self.username},
            "contexts": [c.doc() for c in self.contexts],
        }


@dataclass(frozen=True)
class Purged(_Fields):
    """What `contexts purge` did (or, dry, would do)."""

    purged: int
    dry_run: bool


@dataclass(frozen=True)
class Erased(_Fields):
    """`users delete --json` / `DELETE /api/users/{id}`: what was deleted."""

    telegram_id: int
    links: int
    contexts: int
    usage_rows: int
    # From the queue, when one is configured: updates dropped unanswered, and entries
    # deleted from the replies, dead-letter and live streams.
    queued_dropped: int = 0
    replies: int = 0
    dead_letters: int = 0


@dataclass(frozen=True)
class DeletedSecretary:
    """`delete --json`: the secretary deleted and how many contexts went with it."""

    id: uuid.UUID
    name: str
    contexts: int

    def doc(self) -> dict[str, Any]:
        """The SPEC.md document."""
        return {"id": str(self.id), "name": self.name, "contexts": self.contexts}


def _engine(catalog: Catalog) -> Engine:
    from sqlalchemy import Engine

    return catalog if isinstance(catalog, Engine) else catalog.engine


def _telegram_id(catalog: Catalog, user: UserRef) -> int:
    with transaction(_engine(catalog)) as conn:
        return int(writes.user(conn, user).telegram_id)


def _secretary_id(catalog: Catalog, secretary: str | uuid.UUID) -> uuid.UUID:
    with transaction(_engine(catalog)) as conn:
        found: uuid.UUID = writes.secretary(conn, secretary).id
        return found


def _names(catalog: Catalog) -> dict[uuid.UUID, str]:
    """Secretary id -> name, and each secretary's tool ledger -> `<name> (tool calls)`."""
    from sqlalchemy import select

    from secretaries_core.catalog.reads import SECRETARY
    from secretaries_core.tools.ledger import ledger_id

    with transaction(_engine(catalog)) as conn:
        rows = conn.execute(
            select(SECRETARY.c.id, SECRETARY.c.name).where(SECRETARY.c.is_secretary)
        ).all()
    names = {}
    for sec_id, name in rows:
        names[sec_id] = name
        names[ledger_id(sec_id)] = f"{name} (tool calls)"
    return names


def context_stats(catalog: Catalog, store: ContextStore) -> ContextStats:
    """Contexts and messages in total and per secretary name (id for unknown secretaries)."""
    found = store.stats()
    names = _names(catalog)
    per = sorted(found.by_secretary.items(), key=lambda item: names.get(item[0], str(item[0])))
    return ContextStats(
        contexts=found.contexts,
        messages=found.messages,
        by_secretary={names.get(sid, str(sid)): Counts(c, m) for sid, (c, m) in per},
    )


def user_contexts(
    catalog: Catalog,
    store: ContextStore,
    user: UserRef,
    secretary: str | None = None,
) -> UserContexts:
    """A registered user's contexts with their messages, oldest message first."""
    with transaction(_engine(catalog)) as conn:
        person = writes.user(conn, user)
        sec_id = writes.secretary(conn, secretary).id if secretary else None
    names = _names(catalog)
    contexts = [
        Context(
            secretary_id=summary.secretary_id,
            secretary=names.get(summary.secretary_id, str(summary.secretary_id)),
            last_activity=summary.last_activity,
            messages=[
                Message(
                    role=m.role,
                    content=m.content,
                    at=m.at,
                    metadata=dict(m.metadata) if m.metadata else None,
                )
                for m in store.read(person.telegram_id, summary.secretary_id)
            ],
        )
        for summary in store.iter_contexts(user_id=person.telegram_id, secretary_id=sec_id)
    ]
    return UserContexts(person.telegram_id, person.username, contexts)


def purge_contexts(
    catalog: Catalog,
    store: ContextStore,
    *,
    older_than: timedelta | None = None,
    user: UserRef | None = None,
    secretary: str | None = None,
    dry_run: bool = False,
    progress: ProgressCallback | None = None,
) -> Purged:
    """Resolve USER and SEC through the registry, then purge the store."""
    user_id = _telegram_id(catalog, user) if user is not None else None
    sec_id = _secretary_id(catalog, secretary) if secretary else None
    purged = store.purge(
        older_than=older_than,
        user_id=user_id,
        secretary_id=sec_id,
        dry_run=dry_run,
        progress=progress,
    )
    return Purged(purged=purged, dry_run=dry_run)


def usage_report(
    catalog: Catalog,
    *,
    user: UserRef | None = None,
    secretary: str | uuid.UUID | None = None,
    since: timedelta | None = None,
    now: datetime | None = None,
) -> UsageReport:
    """`catalog.usage_report.usage_report` on the catalog's database."""
    from secretaries_core.catalog import usage_report as report

    return report.usage_report(
        _engine(catalog), user=user, secretary=secretary, since=since, now=now
    )


def erase_user(
    catalog: Catalog, store: ContextStore, user: UserRef, queue: Queue | None = None
) -> Erased:
    """Erase a user everywhere: contexts, the queue, then the user's rows, then contexts again.

    Erasing the contexts fences the user first (context/fences.py): a turn or summary in
    flight writes nothing afterwards; the queue's erase fences its replies and live pieces
    the same way (queue/erasure.py). The database part is one transaction (user row, links,
    pins, reply references; usage folded into totals under no user), so the user is either
    fully known or unknown. Contexts are deleted before it (a failure leaves a whole user to
    erase again) and once more after it.
    """
    telegram_id = _telegram_id(catalog, user)
    contexts = store.erase_user(telegram_id)
    found = None
    if queue is not None:
        from secretaries_core.queue.erasure import erase_user as erase_from_queue

        found = erase_from_queue(queue, telegram_id)
    from sqlalchemy import Engine

    if isinstance(catalog, Engine):
        with transaction(catalog, write=True) as conn:
            _, links, usage_rows = writes.erase_user_rows(conn, telegram_id)
    else:
        _, links, usage_rows = catalog.erase_user_rows(telegram_id)
    contexts += store.erase_user(telegram_id)
    return Erased(
        telegram_id=telegram_id,
        links=links,
        contexts=contexts,
        usage_rows=usage_rows,
        queued_dropped=found.queued if found else 0,
        replies=found.replies if found else 0,
        dead_letters=found.dead_letters if found else 0,
    )


def delete_secretary(
    catalog: Catalog, store: ContextStore, secretary: str | uuid.UUID
) -> DeletedSecretary:
    """Delete a secretary no link ever referenced, and its contexts."""
    from sqlalchemy import Engine

    if isinstance(catalog, Engine):
        changed = "the secretary changed concurrently; try again"
        with transaction(catalog, write=True, conflict=changed) as conn:
            sec_id, name = writes.delete_secretary(conn, secretary)
    else:
        deleted = catalog.delete_secretary(secretary)
        sec_id, name = deleted.id, deleted.name
    contexts = store.erase_secretary(sec_id)
    return DeletedSecretary(id=sec_id, name=name, contexts=contexts)
