"""Tool calls in usage and in the daily quota counters.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("usage_daily", "quota_day"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("tool_calls", sa.Integer(), nullable=False, server_default="0")
            )


def downgrade() -> None:
    for table in ("usage_daily", "quota_day"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("tool_calls")
