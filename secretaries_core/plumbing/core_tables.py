"""The tables written with SQLAlchemy Core alone, on a metadata of their own.

`tool`, `api_token`, `provider` and the usage and quota tables have no foreign keys and
no ORM class. On SQLModel's metadata, every module that reads them imported SQLModel,
pydantic and the ORM first (more CPU than `import sqlalchemy` itself), so `tokens list`
or `tools show` started as slowly as the commands that need the ORM. Here they cost
nothing more than SQLAlchemy.

Alembic and the drift test compare the schema with SQLModel's metadata: `copy_onto`
(called by catalog/models.py, which defines the ORM tables) puts a copy of each table
there, so that metadata still describes the whole schema.
"""

from __future__ import annotations

import importlib

from sqlalchemy import MetaData

CORE_METADATA = MetaData()
# The modules that define tables on CORE_METADATA.
MODULES = (
    "secretaries_core.tools.table",
    "secretaries_core.catalog.api_tokens",
    "secretaries_core.llm.providers_table",
    "secretaries_core.usage.tables",
    "secretaries_core.context.sql_tables",
    "secretaries_core.context.fences",
)


def copy_onto(metadata: MetaData) -> None:
    """Copy every table of CORE_METADATA onto `metadata` (once each)."""
    for name in MODULES:
        importlib.import_module(name)
    for table in list(CORE_METADATA.tables.values()):
        if table.key not in metadata.tables:
            table.to_metadata(metadata)
