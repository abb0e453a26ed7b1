"""`INSERT ... ON CONFLICT` for the two databases the project supports."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, Table

from secretaries_core.errors import InvalidInput


def insert_for(engine: Engine, table: Table) -> Any:
    """The dialect's insert construct, which knows `on_conflict_do_update`."""
    name = engine.dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)
    raise InvalidInput(f"usage and quotas need SQLite or PostgreSQL, not {name}")
