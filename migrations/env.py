"""Alembic environment: runs on the engine the library hands over, or on the configured URL."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Engine
from sqlmodel import SQLModel

from secretaries_core.catalog import (
    models,  # noqa: F401  (registers the tables on the metadata)
    versions_tables,  # noqa: F401
)
from secretaries_core.config import Settings
from secretaries_core.context import sql_tables  # noqa: F401
from secretaries_core.llm import providers_table  # noqa: F401
from secretaries_core.plumbing.db import make_engine
from secretaries_core.usage import tables as usage_tables  # noqa: F401

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = SQLModel.metadata


def _engine() -> Engine:
    given = config.attributes.get("engine")
    if given is not None:
        return given
    # Run as plain `alembic` from the checkout: same resolution as the CLI.
    return make_engine(Settings.load().database_url)


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url") or Settings.load().database_url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = _engine()
    # IMMEDIATE on SQLite: two processes upgrading at once queue instead of racing.
    with engine.execution_options(sqlite_begin="IMMEDIATE").connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
