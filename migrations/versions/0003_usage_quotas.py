"""Usage per (user, secretary, model, UTC day), daily quota counters and per-user limits.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "usage_daily",
        sa.Column("telegram_id", sa.BigInteger(), primary_key=True),
        sa.Column("secretary_id", sa.Uuid(), primary_key=True),
        sa.Column("model", sa.String(length=200), primary_key=True),
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("estimated_calls", sa.Integer(), nullable=False),
    )
    op.create_index("ix_usage_day", "usage_daily", ["day"])
    op.create_index("ix_usage_secretary_day", "usage_daily", ["secretary_id", "day"])
    op.create_table(
        "quota_day",
        sa.Column("telegram_id", sa.BigInteger(), primary_key=True),
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "user_limit",
        sa.Column("telegram_id", sa.BigInteger(), primary_key=True),
        sa.Column("messages_per_day", sa.Integer(), nullable=True),
        sa.Column("tokens_per_day", sa.BigInteger(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("user_limit")
    op.drop_table("quota_day")
    op.drop_index("ix_usage_secretary_day", table_name="usage_daily")
    op.drop_index("ix_usage_day", table_name="usage_daily")
    op.drop_table("usage_daily")
