"""Secretary versions, rollouts, per-version counts, pins and reply references.

Every existing secretary gets its current model, prompt and params as its current
(live) version, so nothing changes for users and history starts from there.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "secretary_version",
        sa.Column(
            "secretary_id",
            sa.Uuid(),
            sa.ForeignKey("assistant.id", ondelete="CASCADE", name="fk_version_secretary"),
            primary_key=True,
        ),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "rollout",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "secretary_id",
            sa.Uuid(),
            sa.ForeignKey("assistant.id", ondelete="CASCADE", name="fk_rollout_secretary"),
            nullable=False,
        ),
        sa.Column("live_version", sa.Integer(), nullable=False),
        sa.Column("candidate_version", sa.Integer(), nullable=False),
        sa.Column("percent", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("max_error_rate", sa.Float(), nullable=True),
        sa.Column("max_dislike_rate", sa.Float(), nullable=True),
        sa.Column("min_messages", sa.Integer(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("ended_at", TS, nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
    )
    op.create_index(
        "uq_rollout_one_running",
        "rollout",
        ["secretary_id"],
        unique=True,
        sqlite_where=sa.text("state = 'running'"),
        postgresql_where=sa.text("state = 'running'"),
    )
    op.create_table(
        "version_count",
        sa.Column("secretary_id", sa.Uuid(), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("period", sa.String(length=32), primary_key=True),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("likes", sa.Integer(), nullable=False),
        sa.Column("dislikes", sa.Integer(), nullable=False),
    )
    op.create_table(
        "version_pin",
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("telegramuser.id", ondelete="CASCADE", name="fk_pin_user"),
            primary_key=True,
        ),
        sa.Column(
            "secretary_id",
            sa.Uuid(),
            sa.ForeignKey("assistant.id", ondelete="CASCADE", name="fk_pin_secretary"),
            primary_key=True,
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "reply_ref",
        sa.Column("telegram_id", sa.BigInteger(), primary_key=True),
        sa.Column("message_id", sa.BigInteger(), primary_key=True),
        sa.Column("secretary_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_reply_ref_created", "reply_ref", ["created_at"])
    # Existing secretaries: their current state is their current, live version.
    assistant = sa.table(
        "assistant",
        sa.column("id", sa.Uuid()),
        sa.column("version", sa.Integer()),
        sa.column("model", sa.String()),
        sa.column("prompt", sa.Text()),
        sa.column("params", sa.JSON()),
    )
    versions = sa.table(
        "secretary_version",
        sa.column("secretary_id", sa.Uuid()),
        sa.column("version", sa.Integer()),
        sa.column("model", sa.String()),
        sa.column("prompt", sa.Text()),
        sa.column("params", sa.JSON()),
        sa.column("note", sa.Text()),
        sa.column("state", sa.String()),
        sa.column("created_at", TS),
    )
    bind = op.get_bind()
    now = datetime.now(UTC)
    rows = bind.execute(
        sa.select(
            assistant.c.id,
            assistant.c.version,
            assistant.c.model,
            assistant.c.prompt,
            assistant.c.params,
        )
    ).all()
    if rows:
        op.bulk_insert(
            versions,
            [
                {
                    "secretary_id": r.id,
                    "version": r.version,
                    "model": r.model,
                    "prompt": r.prompt,
                    "params": r.params,
                    "note": None,
                    "state": "live",
                    "created_at": now,
                }
                for r in rows
            ],
        )


def downgrade() -> None:
    op.drop_index("ix_reply_ref_created", table_name="reply_ref")
    op.drop_table("reply_ref")
    op.drop_table("version_pin")
    op.drop_table("version_count")
    op.drop_index("uq_rollout_one_running", table_name="rollout")
    op.drop_table("rollout")
    op.drop_table("secretary_version")
