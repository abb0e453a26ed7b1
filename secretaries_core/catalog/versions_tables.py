"""Tables of secretary versions, rollouts, per-version counts, pins and reply references.

Created by migration 0005 (never by create_all). The `assistant` row keeps the live
content and its number (`version`); `secretary_version` keeps the content of every
version, so a draft, a candidate or any earlier version can be served, diffed and
restored.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    Uuid,
    text,
)
from sqlmodel import SQLModel

from secretaries_core.plumbing.timeutil import UTCDateTime

metadata = SQLModel.metadata

VERSION_TABLE = Table(
    "secretary_version",
    metadata,
    Column(
        "secretary_id",
        Uuid,
        ForeignKey("assistant.id", ondelete="CASCADE", name="fk_version_secretary"),
        primary_key=True,
    ),
    Column("version", Integer, primary_key=True),
    Column("model", String(200), nullable=False),
    Column("prompt", Text, nullable=False),
    Column("params", JSON, nullable=False),
    Column("note", Text, nullable=True),
    # live | draft | candidate | retired (live and candidate are also derived, see versions)
    Column("state", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

ROLLOUT_TABLE = Table(
    "rollout",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column(
        "secretary_id",
        Uuid,
        ForeignKey("assistant.id", ondelete="CASCADE", name="fk_rollout_secretary"),
        nullable=False,
    ),
    Column("live_version", Integer, nullable=False),
    Column("candidate_version", Integer, nullable=False),
    Column("percent", Integer, nullable=False),
    # running | promoted | aborted | rolled_back
    Column("state", String(16), nullable=False),
    Column("max_error_rate", Float, nullable=True),
    Column("max_dislike_rate", Float, nullable=True),
    Column("min_messages", Integer, nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("ended_at", UTCDateTime(), nullable=True),
    Column("reason", Text, nullable=True),
    # A judge reading a sample of the candidate's replies (migration 0010).
    Column("judge_rubric", Text, nullable=True),
    Column("judge_model", String(200), nullable=True),
    Column("judge_sample", Float, nullable=True),
    Column("max_judge_fail_rate", Float, nullable=True),
    # At most one running rollout per secretary, kept by the database.
    Index(
        "uq_rollout_one_running",
        "secretary_id",
        unique=True,
        sqlite_where=text("state = 'running'"),
        postgresql_where=text("state = 'running'"),
    ),
)

# Counts per (secretary, version, period): period "all", or a rollout's id (hex) for the
# counts of that rollout's life, so live and candidate are compared over the same time.
VERSION_COUNT_TABLE = Table(
    "version_count",
    metadata,
    Column("secretary_id", Uuid, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("period", String(32), primary_key=True),
    Column("messages", Integer, nullable=False),
    Column("errors", Integer, nullable=False),
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    Column("likes", Integer, nullable=False),
    Column("dislikes", Integer, nullable=False),
    # Replies the rollout's judge read, and those it failed (migration 0010).
    Column("judged", Integer, nullable=False, server_default="0"),
    Column("judge_failed", Integer, nullable=False, server_default="0"),
)

# The latest eval of each version (`secretaries eval`), which release gates require.
EVAL_TABLE = Table(
    "version_eval",
    metadata,
    Column("secretary_id", Uuid, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("passed", Integer, nullable=False),
    Column("failed", Integer, nullable=False),
    Column("content", String(64), nullable=False),
    Column("failures", JSON, nullable=False),
    Column("at", UTCDateTime(), nullable=False),
)

PIN_TABLE = Table(
    "version_pin",
    metadata,
    Column(
        "user_id",
        Integer,
        ForeignKey("telegramuser.id", ondelete="CASCADE", name="fk_pin_user"),
        primary_key=True,
    ),
    Column(
        "secretary_id",
        Uuid,
        ForeignKey("assistant.id", ondelete="CASCADE", name="fk_pin_secretary"),
        primary_key=True,
    ),
    Column("version", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

# A reply the bot sent (chat message id) → the version that wrote it, for reactions.
REPLY_REF_TABLE = Table(
    "reply_ref",
    metadata,
    Column("telegram_id", BigInteger, primary_key=True),
    Column("message_id", BigInteger, primary_key=True),
    Column("secretary_id", Uuid, nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Index("ix_reply_ref_created", "created_at"),
)
