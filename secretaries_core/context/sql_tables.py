"""Tables of the embedded context store (created by migration 0002, never by create_all)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
)

from secretaries_core.plumbing.core_tables import CORE_METADATA
from secretaries_core.plumbing.timeutil import UTCDateTime

# BIGINT ids on PostgreSQL; on SQLite only INTEGER PRIMARY KEY is the auto-increasing rowid.
BigId = BigInteger().with_variant(Integer(), "sqlite")

# Core-only (no ORM class): on the Core metadata, copied onto SQLModel's for Alembic and
# the drift check (plumbing/core_tables.py), so the context store loads no ORM.
CONTEXT_TABLE = Table(
    "conversation_context",
    CORE_METADATA,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("user_id", BigInteger, nullable=False),
    Column("secretary_id", Uuid, nullable=False),
    # One (user, secretary) context: its activity and expiry, and how many messages it holds.
    Column("last_activity", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("message_count", Integer, nullable=False, default=0),
    UniqueConstraint("user_id", "secretary_id", name="uq_context_user_secretary"),
    # Purge by age and by expiry walk these instead of the whole table.
    Index("ix_context_last_activity", "last_activity"),
    Index("ix_context_expires_at", "expires_at"),
    Index("ix_context_secretary", "secretary_id"),
)

# One message of a context, in insertion order (`id`).
MESSAGE_TABLE = Table(
    "context_message",
    CORE_METADATA,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column(
        "context_id",
        BigId,
        ForeignKey("conversation_context.id", ondelete="CASCADE", name="fk_message_context"),
        nullable=False,
    ),
    Column("role", String(32), nullable=False),
    Column("content", Text, nullable=False),
    Column("meta", JSON, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Index("ix_context_message_context", "context_id", "id"),
)
