"""The persistent models: users, secretaries (assistants) and the links between them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlmodel import Field, SQLModel

from secretaries_core.plumbing.core_tables import copy_onto
from secretaries_core.plumbing.ids import uuid7
from secretaries_core.plumbing.timeutil import UTCDateTime, utcnow


def _timestamp() -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class TelegramUserBase(SQLModel):
    """Fields a caller provides for a user."""

    telegram_id: int = Field(sa_type=BigInteger, nullable=False)
    username: str | None = Field(default=None, max_length=64, index=True)


class TelegramUser(TelegramUserBase, table=True):
    """A bot user, identified by their Telegram id."""

    __table_args__ = (UniqueConstraint("telegram_id", name="uq_telegramuser_telegram_id"),)

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class AssistantBase(SQLModel):
    """Fields a caller provides for a secretary."""

    name: str = Field(max_length=100, nullable=False)
    description: str = Field(default="", sa_type=Text, nullable=False)
    model: str = Field(max_length=200, nullable=False)
    prompt: str = Field(sa_type=Text, nullable=False)
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class AssistantCreate(AssistantBase):
    """What `create` takes."""

    is_default: bool = False
    # False: an assistant users cannot pick (a tool's callee); never the default.
    is_secretary: bool = True


class AssistantUpdate(SQLModel):
    """What `update` takes: every field optional; `params` are merged into the old ones."""

    name: str | None = None
    description: str | None = None
    model: str | None = None
    prompt: str | None = None
    params: dict[str, Any] | None = None


class Assistant(AssistantBase, table=True):
    """An assistant; the ones with `is_secretary` form the catalog users pick from."""

    __table_args__ = (
        UniqueConstraint("name", name="uq_assistant_name"),
        # The database, not the code, keeps the default unique.
        Index(
            "uq_assistant_single_default",
            "is_default",
            unique=True,
            sqlite_where=text("is_default"),
            postgresql_where=text("is_default"),
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    is_secretary: bool = Field(default=True, nullable=False)
    is_active: bool = Field(default=True, nullable=False)
    is_default: bool = Field(default=False, nullable=False)
    version: int = Field(default=1, nullable=False)
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class UserSecretaryLink(SQLModel, table=True):
    """A user's choice of secretary; the active row is the current one, the rest is history."""

    __table_args__ = (
        # At most one active link per user, even when two writers race.
        Index(
            "uq_link_one_active_per_user",
            "user_id",
            unique=True,
            sqlite_where=text("is_active"),
            postgresql_where=text("is_active"),
        ),
        Index("ix_link_user_created", "user_id", "created_at"),
        # Serves per-secretary counts and walking one secretary's users in id order.
        Index("ix_link_secretary_active", "secretary_id", "is_active", "user_id"),
    )

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    user_id: int = Field(
        sa_column=Column(
            ForeignKey("telegramuser.id", ondelete="CASCADE", name="fk_link_user"), nullable=False
        )
    )
    secretary_id: uuid.UUID = Field(
        sa_column=Column(Uuid, ForeignKey("assistant.id", name="fk_link_secretary"), nullable=False)
    )
    is_active: bool = Field(default=True, nullable=False)
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


# Core tables for set-based SQL (the ORM classes' `__table__`, typed for mypy).
TELEGRAMUSER_TABLE: Table = TelegramUser.__table__  # type: ignore[attr-defined]
ASSISTANT_TABLE: Table = Assistant.__table__  # type: ignore[attr-defined]
LINK_TABLE: Table = UserSecretaryLink.__table__  # type: ignore[attr-defined]


# The Core-only tables (tool, api_token, provider) join the ORM's metadata here, so that
# it describes the whole schema for Alembic (see plumbing/core_tables.py).
copy_onto(SQLModel.metadata)
