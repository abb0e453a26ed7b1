"""Erase fences (contexts cleared or erased: late writes refused) and scoped API tokens.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # One row per user (or per context) erased or cleared lately, named by a digest,
    # never by the Telegram id; rows older than a day are pruned by later fences.
    op.create_table(
        "context_fence",
        sa.Column("id", sa.String(length=64), primary_key=True),
        # Epoch seconds: compared with when a turn began, on every backend alike.
        sa.Column("fenced_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "api_token",
        sa.Column("name", sa.String(length=64), primary_key=True),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("api_token")
    op.drop_table("context_fence")
