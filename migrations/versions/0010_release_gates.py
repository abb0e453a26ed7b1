"""Release gates: eval results per version, a judge in rollouts, judged counts.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "version_eval",
        sa.Column("secretary_id", sa.Uuid(), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("passed", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        # What was evaluated: the version's content and its tools' definitions (a digest).
        sa.Column("content", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("rollout") as batch:
        batch.add_column(sa.Column("judge_rubric", sa.Text(), nullable=True))
        batch.add_column(sa.Column("judge_model", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("judge_sample", sa.Float(), nullable=True))
        batch.add_column(sa.Column("max_judge_fail_rate", sa.Float(), nullable=True))
    with op.batch_alter_table("version_count") as batch:
        batch.add_column(sa.Column("judged", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("judge_failed", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("version_count") as batch:
        batch.drop_column("judge_failed")
        batch.drop_column("judged")
    with op.batch_alter_table("rollout") as batch:
        batch.drop_column("max_judge_fail_rate")
        batch.drop_column("judge_sample")
        batch.drop_column("judge_model")
        batch.drop_column("judge_rubric")
    op.drop_table("version_eval")
