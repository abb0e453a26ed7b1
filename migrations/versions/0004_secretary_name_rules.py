"""Secretary names: report rows that break the new rules (no schema change, no rewrite).

Names are now 1-64 letters, digits, `-`, `_`, `.`, unique regardless of case; descriptions
and prompts refuse control characters. Existing rows keep working as they are: this
revision only lists the ones an operator may want to rename (`secretaries db upgrade`
prints the same list).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

import logging
from collections.abc import Sequence

from alembic import op

from secretaries_core.catalog.reads import nonconforming_names

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")


def upgrade() -> None:
    for problem in nonconforming_names(op.get_bind()):
        log.warning("secretary %s", problem)


def downgrade() -> None:
    """Nothing was changed."""
