"""Embedded context store: contexts and their messages.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "conversation_context",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True, nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("secretary_id", sa.Uuid(), nullable=False),
        sa.Column("last_activity", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("message_count", sa.Integer(), nullable=False),
        sa.UniqueConstraint("user_id", "secretary_id", name="uq_context_user_secretary"),
    )
    op.create_index("ix_context_last_activity", "conversation_context", ["last_activity"])
    op.create_index("ix_context_expires_at", "conversation_context", ["expires_at"])
    op.create_index("ix_context_secretary", "conversation_context", ["secretary_id"])
    op.create_table(
        "context_message",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True, nullable=False),
        sa.Column(
            "context_id",
            BIG_ID,
            sa.ForeignKey("conversation_context.id", ondelete="CASCADE", name="fk_message_context"),
            nullable=False,
        ),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_context_message_context", "context_message", ["context_id", "id"])


def downgrade() -> None:
    op.drop_table("context_message")
    op.drop_table("conversation_context")
