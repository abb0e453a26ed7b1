"""Catalog, users and user-secretary links.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "telegramuser",
        sa.Column("telegram_id", sa.BigInteger(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=True),
        sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("telegram_id", name="uq_telegramuser_telegram_id"),
    )
    op.create_index("ix_telegramuser_username", "telegramuser", ["username"])

    op.create_table(
        "assistant",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("id", sa.Uuid(), primary_key=True, nullable=False),
        sa.Column("is_secretary", sa.Boolean(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("name", name="uq_assistant_name"),
    )
    op.create_index(
        "uq_assistant_single_default",
        "assistant",
        ["is_default"],
        unique=True,
        sqlite_where=sa.text("is_default"),
        postgresql_where=sa.text("is_default"),
    )

    op.create_table(
        "usersecretarylink",
        sa.Column("id", sa.Uuid(), primary_key=True, nullable=False),
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("telegramuser.id", ondelete="CASCADE", name="fk_link_user"),
            nullable=False,
        ),
        sa.Column(
            "secretary_id",
            sa.Uuid(),
            sa.ForeignKey("assistant.id", name="fk_link_secretary"),
            nullable=False,
        ),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index(
        "uq_link_one_active_per_user",
        "usersecretarylink",
        ["user_id"],
        unique=True,
        sqlite_where=sa.text("is_active"),
        postgresql_where=sa.text("is_active"),
    )
    op.create_index("ix_link_user_created", "usersecretarylink", ["user_id", "created_at"])
    op.create_index(
        "ix_link_secretary_active", "usersecretarylink", ["secretary_id", "is_active", "user_id"]
    )


def downgrade() -> None:
    op.drop_table("usersecretarylink")
    op.drop_table("assistant")
    op.drop_table("telegramuser")
