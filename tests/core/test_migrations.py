"""The Alembic chain: blank → head gives the expected schema, no drift, and it round-trips."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

import secretaries_core.catalog.api_tokens
import secretaries_core.catalog.versions_tables
import secretaries_core.context.fences
import secretaries_core.llm.providers_table
import secretaries_core.usage.tables  # noqa: F401  (usage tables on the metadata)
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine

TABLES = {"telegramuser", "assistant", "usersecretarylink", "alembic_version"}


def _partial_index_sql(engine, name: str) -> str:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return conn.execute(
                text("SELECT sql FROM sqlite_master WHERE type='index' AND name=:n"), {"n": name}
            ).scalar_one()
        return conn.execute(
            text("SELECT indexdef FROM pg_indexes WHERE indexname=:n"), {"n": name}
        ).scalar_one()


def test_blank_upgrade_creates_schema_with_partial_unique_indexes(blank_url: str) -> None:
    engine = make_engine(blank_url)
    assert schema.current_revision(engine) is None
    schema.upgrade(engine)
    assert schema.current_revision(engine) == schema.head_revision(engine)
    insp = inspect(engine)
    assert set(insp.get_table_names()) >= TABLES
    cols = {c["name"] for c in insp.get_columns("usersecretarylink")}
    assert cols == {"id", "user_id", "secretary_id", "is_active", "created_at", "updated_at"}
    fks = {fk["referred_table"] for fk in insp.get_foreign_keys("usersecretarylink")}
    assert fks == {"telegramuser", "assistant"}
    for name, column in [
        ("uq_link_one_active_per_user", "is_active"),
        ("uq_assistant_single_default", "is_default"),
    ]:
        sql = _partial_index_sql(engine, name).upper()
        assert "UNIQUE" in sql and "WHERE" in sql and column.upper() in sql.split("WHERE")[1]
    engine.dispose()


def test_no_drift_between_models_and_migrations(db_url: str) -> None:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata
        )
    assert diff == []
    engine.dispose()


def test_downgrade_to_base_and_upgrade_again(db_url: str) -> None:
    engine = make_engine(db_url)
    schema.downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    assert schema.current_revision(engine) is None
    schema.upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES
    engine.dispose()


def test_database_enforces_one_active_link_and_one_default(db_url: str) -> None:
    import uuid
    from datetime import UTC, datetime

    import pytest
    from sqlalchemy.exc import IntegrityError

    engine = make_engine(db_url)
    now = datetime.now(UTC).replace(tzinfo=None)
    sec = [uuid.uuid4().hex for _ in range(2)]
    with engine.begin() as conn:
        for i, s in enumerate(sec):
            conn.execute(
                text(
                    "INSERT INTO assistant (id, name, description, model, prompt, params,"
                    " is_secretary, is_active, is_default, version, created_at, updated_at) VALUES"
                    " (:id, :n, '', 'echo', 'p', '{}', true, true, :d, 1, :t, :t)"
                ),
                {
                    "id": uuid.UUID(s) if engine.dialect.name == "postgresql" else s,
                    "n": f"s{i}",
                    "d": i == 0,
                    "t": now,
                },
            )
        conn.execute(
            text(
                "INSERT INTO telegramuser (telegram_id, created_at, updated_at) VALUES (1, :t, :t)"
            ),
            {"t": now},
        )
    link = (
        "INSERT INTO usersecretarylink (id, user_id, secretary_id, is_active, created_at,"
        " updated_at) SELECT :id, id, :s, true, :t, :t FROM telegramuser"
    )
    conv = (lambda s: uuid.UUID(s)) if engine.dialect.name == "postgresql" else (lambda s: s)
    with engine.begin() as conn:
        conn.execute(text(link), {"id": conv(uuid.uuid4().hex), "s": conv(sec[0]), "t": now})
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text(link), {"id": conv(uuid.uuid4().hex), "s": conv(sec[1]), "t": now})
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text("UPDATE assistant SET is_default = true"))
    engine.dispose()


def test_head_constant_matches_the_scripts(db_url: str) -> None:
    engine = make_engine(db_url)
    assert schema.script_head(engine) == schema.HEAD_REVISION == schema.current_revision(engine)
    engine.dispose()
