"""Tables of usage and quotas (created by migration 0003, never by create_all).

Keyed by the Telegram id rather than a foreign key to `telegramuser`: usage is written on
the hot path without looking the user row up, and erasing a user deletes these rows by
that id in the same transaction as the user row.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Date, Index, Integer, String, Table, Uuid

from secretaries_core.plumbing.core_tables import CORE_METADATA

# Core-only (no ORM class, no foreign key): copied onto the models' metadata for the
# migration drift check (plumbing/core_tables.py).
metadata = CORE_METADATA

USAGE_TABLE = Table(
    "usage_daily",
    metadata,
    Column("telegram_id", BigInteger, primary_key=True),
    Column("secretary_id", Uuid, primary_key=True),
    Column("model", String(200), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("messages", Integer, nullable=False),
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    # How many of the counted calls had no usage from the provider (our own estimate).
    Column("estimated_calls", Integer, nullable=False),
    # Tool calls the counted messages made (migration 0009).
    Column("tool_calls", Integer, nullable=False, server_default="0"),
    Index("ix_usage_day", "day"),
    Index("ix_usage_secretary_day", "secretary_id", "day"),
)

# One row per user and UTC day while a quota applies to them: the counter that admission
# increments atomically (a conditional upsert), so racing messages cannot both pass.
QUOTA_DAY_TABLE = Table(
    "quota_day",
    metadata,
    Column("telegram_id", BigInteger, primary_key=True),
    Column("day", Date, primary_key=True),
    Column("messages", Integer, nullable=False),
    Column("tokens", BigInteger, nullable=False),
    # Tool calls taken today, checked against `tool_calls_per_day` (migration 0009).
    Column("tool_calls", Integer, nullable=False, server_default="0"),
)

# Per-user overrides of the daily quotas (`secretaries users limit`); NULL = not overridden.
USER_LIMIT_TABLE = Table(
    "user_limit",
    metadata,
    Column("telegram_id", BigInteger, primary_key=True),
    Column("messages_per_day", Integer, nullable=True),
    Column("tokens_per_day", BigInteger, nullable=True),
)
