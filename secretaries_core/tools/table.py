"""The `tool` table (migration 0008): one row per registered tool."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, Float, String, Table

from secretaries_core.plumbing.core_tables import CORE_METADATA
from secretaries_core.plumbing.timeutil import UTCDateTime

TOOL_TABLE = Table(
    "tool",
    CORE_METADATA,
    Column("name", String(32), primary_key=True),
    Column("kind", String(16), nullable=False),  # widened by migration 0011 (assistant)
    Column("config", JSON, nullable=False),
    Column("timeout", Float, nullable=False),
    Column("confirm", Boolean, nullable=False),
    Column("read_only", Boolean, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)
