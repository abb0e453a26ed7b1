"""Tables of the embedded context store (created by migration 0002, never by create_all)."""

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
    Integer,
    Table,
    Text,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

from secretaries_core.plumbing.timeutil import UTCDateTime

# BIGINT ids on PostgreSQL; on SQLite only INTEGER PRIMARY KEY is the auto-increasing rowid.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class ConversationContext(SQLModel, table=True):
    """One (user, secretary) context: its activity and expiry, and how many messages it holds."""

    __tablename__ = "conversation_context"
    __table_args__ = (
        UniqueConstraint("user_id", "secretary_id", name="uq_context_user_secretary"),
        # Purge by age and by expiry walk these instead of the whole table.
        Index("ix_context_last_activity", "last_activity"),
        Index("ix_context_expires_at", "expires_at"),
        Index("ix_context_secretary", "secretary_id"),
    )

    id: int | None = Field(
        default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True)
    )
    user_id: int = Field(sa_type=BigInteger, nullable=False)
    secretary_id: uuid.UUID = Field(nullable=False)
    last_activity: datetime = Field(sa_type=UTCDateTime, nullable=False)
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    message_count: int = Field(default=0, nullable=False)


class ContextMessage(SQLModel, table=True):
    """One message of a context, in insertion order (`id`)."""

    __tablename__ = "context_message"
    __table_args__ = (Index("ix_context_message_context", "context_id", "id"),)

    id: int | None = Field(
        default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True)
    )
    context_id: int = Field(
        sa_column=Column(
            BigId,
            ForeignKey("conversation_context.id", ondelete="CASCADE", name="fk_message_context"),
            nullable=False,
        )
    )
    role: str = Field(max_length=32, nullable=False)
    content: str = Field(sa_type=Text, nullable=False)
    meta: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


CONTEXT_TABLE: Table = ConversationContext.__table__  # type: ignore[attr-defined]
MESSAGE_TABLE: Table = ContextMessage.__table__  # type: ignore[attr-defined]
