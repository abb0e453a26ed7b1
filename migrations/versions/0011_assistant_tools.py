"""Assistants as tools: the tool kind `assistant` needs a wider `kind` column.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tool") as batch:
        batch.alter_column(
            "kind", existing_type=sa.String(length=8), type_=sa.String(length=16), nullable=False
        )


def downgrade() -> None:
    op.execute("DELETE FROM tool WHERE kind = 'assistant'")
    with op.batch_alter_table("tool") as batch:
        batch.alter_column(
            "kind", existing_type=sa.String(length=16), type_=sa.String(length=8), nullable=False
        )
