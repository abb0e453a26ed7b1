"""Fixtures: databases (SQLite and a real PostgreSQL), engines, registries and the CLI runner."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, create_engine, select, text

from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine
from tests.servers import postgres_server

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """Admin URL of a PostgreSQL server: $SECRETARIES_TEST_POSTGRES_URL or a private one."""
    given = os.environ.get("SECRETARIES_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    with postgres_server() as url:
        yield url


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def blank_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database URL, once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def db_url(blank_url: str) -> str:
    """A database URL already upgraded to head, once per backend."""
    engine = make_engine(blank_url)
    schema.upgrade(engine)
    engine.dispose()
    return blank_url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on the upgraded database."""
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def registry(engine: Engine) -> SecretaryRegistry:
    """A registry on the upgraded database."""
    return SecretaryRegistry(engine)


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted: compare two to prove nothing changed."""
    meta = MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        return {
            name: sorted(tuple(map(repr, row)) for row in conn.execute(select(table)))
            for name, table in meta.tables.items()
        }


_skipped: list[str] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests that run for tens of seconds (`slow`, `long`) first: spread over the
    workers at the start, they do not leave one worker running alone at the end."""
    items.sort(
        key=lambda item: (
            0 if item.get_closest_marker("slow") else 1 if item.get_closest_marker("long") else 2
        )
    )


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Remember skipped tests so that CI can refuse them."""
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With SECRETARIES_NO_SKIP=1 (CI), any skipped test fails the run."""
    if _skipped and os.environ.get("SECRETARIES_NO_SKIP") == "1":
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(  # type: ignore[union-attr]
            f"FAILED: {len(_skipped)} test(s) skipped, which CI does not allow: {_skipped[:5]}"
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


from tests.context_fixtures import cluster_url, handle, redis_url  # noqa: E402, F401
