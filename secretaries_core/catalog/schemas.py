"""Read models: the JSON shapes of SPEC.md, shared by the CLI's `--json` and the REST API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from secretaries_core.catalog.serving import Source as Source

if TYPE_CHECKING:  # only the `of` constructors' signatures: no ORM for the shapes
    from secretaries_core.catalog.models import Assistant, TelegramUser


class SecretaryOut(BaseModel):
    """A secretary as `list` shows it."""

    id: uuid.UUID
    name: str
    description: str
    model: str
    params: dict[str, Any]
    is_active: bool
    is_default: bool
    version: int
    users: int
    # False for an assistant users cannot pick (`create --no-secretary`): a tool's callee.
    is_secretary: bool = True

    @classmethod
    def of(cls, secretary: Assistant, users: int) -> SecretaryOut:
        """Build from a row and its count of active links."""
        return cls(**_secretary_fields(secretary), users=users)


class SecretaryDetail(SecretaryOut):
    """A secretary as `show` shows it: with its prompt and timestamps."""

    prompt: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, secretary: Assistant, users: int) -> SecretaryDetail:
        """Build from a row and its count of active links."""
        return cls(
            **_secretary_fields(secretary),
            users=users,
            prompt=secretary.prompt,
            created_at=secretary.created_at,
            updated_at=secretary.updated_at,
        )


def _secretary_fields(secretary: Assistant) -> dict[str, Any]:
    return {
        "id": secretary.id,
        "name": secretary.name,
        "description": secretary.description,
        "model": secretary.model,
        "params": dict(secretary.params),
        "is_active": secretary.is_active,
        "is_default": secretary.is_default,
        "version": secretary.version,
        "is_secretary": secretary.is_secretary,
    }


class UserOut(BaseModel):
    """A user as `current` names them."""

    telegram_id: int
    username: str | None

    @classmethod
    def of(cls, user: TelegramUser) -> UserOut:
        """Build from a row."""
        return cls(telegram_id=user.telegram_id, username=user.username)


class UserListItem(UserOut):
    """A user as `users list` shows them, with the secretary of their active link."""

    secretary: str | None
    created_at: datetime


class CurrentOut(BaseModel):
    """The resolved secretary of a user and where it came from."""

    user: UserOut
    secretary: SecretaryOut
    source: Source
    version: int | None = None
    version_source: Literal["live", "rollout", "pinned"] = "live"


class LinkOut(BaseModel):
    """One row of a user's history."""

    secretary_id: uuid.UUID
    secretary: str
    is_active: bool
    created_at: datetime
    updated_at: datetime


class MigrationOut(BaseModel):
    """What `migrate-users` did (or, dry, would do)."""

    secretary: str
    migrated: int
    dry_run: bool


class ImportOut(BaseModel):
    """What `users import` did with the file's rows."""

    created: int
    updated: int
    unchanged: int


class AssignOut(BaseModel):
    """What `assign` did: `changed` is false when the user already had that secretary."""

    user: UserOut
    secretary: str
    previous: str | None
    changed: bool


class PurgeOut(BaseModel):
    """What `contexts purge` did (or, dry, would do)."""

    purged: int
    dry_run: bool


class CountsOut(BaseModel):
    """Contexts and messages of one secretary."""

    contexts: int
    messages: int


class ContextStatsOut(BaseModel):
    """`contexts stats`: totals and per secretary name."""

    contexts: int
    messages: int
    by_secretary: dict[str, CountsOut]


class MessageOut(BaseModel):
    """One stored message."""

    role: str
    content: str
    at: datetime
    metadata: dict[str, Any] | None = None


class ContextOut(BaseModel):
    """One context of a user with its messages, oldest first."""

    secretary_id: uuid.UUID
    secretary: str
    last_activity: datetime
    messages: list[MessageOut]


class UserContextsOut(BaseModel):
    """`contexts show`: a user's contexts."""

    user: UserOut
    contexts: list[ContextOut]


class ReplyOut(BaseModel):
    """The orchestrator's answer, as `chat --json` prints it and `POST /api/messages` returns it."""

    reply: str
    secretary: str
    source: Source


class ErasedOut(BaseModel):
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


class DeletedSecretaryOut(BaseModel):
    """`delete --json`: the secretary deleted and how many contexts went with it."""

    id: uuid.UUID
    name: str
    contexts: int
