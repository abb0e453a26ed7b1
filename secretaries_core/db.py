"""Engines, sessions and the schema check: the only place that knows how to open a database."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.orm import Session

from secretaries_core.errors import BackendUnavailable, InvalidInput

SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_CACHE_KIB = 64 * 1024


_USERINFO_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")


def mask_url(url: str | URL) -> str:
    """Render a URL with its password replaced by `***`, safe for messages and logs."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    return _USERINFO_PASSWORD.sub(r"\1***@", url)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own transaction handling is switched off so that `begin` below decides
    # whether a transaction takes the write lock up front (IMMEDIATE) or lazily.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys = ON")
    if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "memory":
        cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    # 64 MiB of page cache (default 2 MiB): random-UUID primary keys make index inserts land
    # all over the b-tree, and a cache smaller than the index turns every batch into I/O.
    cursor.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
    cursor.close()


def _sqlite_on_begin(conn: Any) -> None:
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for any SQLAlchemy URL; SQLite gets WAL, a busy timeout and foreign keys."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise InvalidInput(f"not a database URL: {url!r}") from exc
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("", "psycopg2"):
        try:
            import psycopg  # noqa: F401
        except ImportError:
            pass
        else:
            parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ImportError) as exc:
        raise BackendUnavailable(
            f"cannot open {mask_url(parsed)}: missing driver ({exc}); "
            "for PostgreSQL install `secretaries[postgres]`"
        ) from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def check_reachable(engine: Engine) -> None:
    """Open one connection, raising `BackendUnavailable` with the masked URL if it fails."""
    try:
        with engine.connect():
            pass
    except DBAPIError as exc:
        raise unavailable(engine, exc) from exc


def unavailable(engine: Engine, exc: BaseException) -> BackendUnavailable:
    """Build the error reported when a database cannot be used."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    return BackendUnavailable(f"cannot reach database {mask_url(engine.url)}: {reason}")


def is_disconnect(exc: DBAPIError) -> bool:
    """Whether a driver error means the server is gone rather than the statement being bad."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    if exc.connection_invalidated:
        return True
    return isinstance(exc, InterfaceError | OperationalError) and "locked" not in str(exc.orig)


@contextmanager
def _translated(engine: Engine) -> Iterator[None]:
    """A lost server becomes `BackendUnavailable`; other driver errors pass through."""
    try:
        yield
    except DBAPIError as exc:
        if is_disconnect(exc):
            raise unavailable(engine, exc) from exc
        raise


def _bind(engine: Engine, write: bool) -> Engine:
    # IMMEDIATE: SQLite writers take the write lock at BEGIN and queue on the busy timeout.
    return engine.execution_options(sqlite_begin="IMMEDIATE") if write else engine


@contextmanager
def session_scope(engine: Engine, *, write: bool = False) -> Iterator[Session]:
    """One ORM transaction: committed on success, rolled back on error.

    `write=True` takes SQLite's write lock at BEGIN so that two writers queue on the busy
    timeout instead of one failing half way with "database is locked".
    """
    session = Session(bind=_bind(engine, write), expire_on_commit=False)
    try:
        with _translated(engine), session.begin():
            yield session
    finally:
        session.close()


@contextmanager
def transaction(engine: Engine, *, write: bool = False) -> Iterator[Connection]:
    """A Core connection in one transaction (no ORM session): for hot paths.

    Same rules as `session_scope`.
    """
    with _translated(engine), _bind(engine, write).begin() as conn:
        yield conn
