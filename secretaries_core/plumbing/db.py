"""Engines, sessions and the schema check: the only place that knows how to open a database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from secretaries_core.errors import BackendUnavailable, InvalidInput
from secretaries_core.redact import mask_url

if TYPE_CHECKING:  # the ORM only where sessions are used: Core-only readers start faster
    from sqlalchemy.orm import Session

SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_CACHE_KIB = 64 * 1024


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    sqlite_pragmas(dbapi_connection)


def sqlite_pragmas(dbapi_connection: Any) -> None:
    """Set up a `sqlite3` connection as every connection of ours: WAL, timeouts, keys."""
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


def _refuse_raw_at(url: str) -> None:
    # `user:p@ss@host`: the driver would take `ss@host` for the host and print it back in
    # its error, i.e. part of the password. A password must percent-encode `@` as `%40`.
    start = url.find("://")
    if start < 0:
        return
    end = min((i for i in (url.find("?", start), url.find("#", start)) if i >= 0), default=len(url))
    if url.count("@", start, end) > 1:
        raise InvalidInput(
            f"not a database URL: {mask_url(url)}: the password holds '@'; write it as %40"
        )


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for any SQLAlchemy URL; SQLite gets WAL, a busy timeout and foreign keys."""
    _refuse_raw_at(url)
    try:
        parsed = make_url(url)
        parsed.port  # noqa: B018  (a non-numeric port fails here, not deep in a driver)
    except (ArgumentError, ValueError):
        raise InvalidInput(
            f"not a database URL: {mask_url(url)} (expected e.g. "
            "postgresql://user:password@host:5432/db or sqlite:///path/to/file.db)"
        ) from None
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
            "for PostgreSQL install `secretaries-platform[postgres]`"
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
    if isinstance(exc, DBAPIError) and is_busy(exc):
        return busy(engine)
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    reason = mask_url(lines[0]) if lines else type(exc).__name__
    return BackendUnavailable(f"cannot reach database {mask_url(engine.url)}: {reason}")


def is_disconnect(exc: DBAPIError) -> bool:
    """Whether a driver error means the server is gone rather than the statement being bad."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    if exc.connection_invalidated:
        return True
    return isinstance(exc, InterfaceError | OperationalError) and "locked" not in str(exc.orig)


def is_busy(exc: DBAPIError) -> bool:
    """SQLite's busy timeout ran out: another connection held the write lock too long."""
    return "database is locked" in str(exc.orig) or "database is busy" in str(exc.orig)


def busy(engine: Engine) -> BackendUnavailable:
    """The error for a database whose write lock stayed taken beyond the busy timeout."""
    return BackendUnavailable(
        f"database {mask_url(engine.url)} is busy: another process held its write lock for "
        f"more than {SQLITE_BUSY_TIMEOUT_MS // 1000} s (a long import or migration?); "
        "try again when it has finished"
    )


@contextmanager
def _translated(engine: Engine) -> Iterator[None]:
    """A lost or locked database becomes `BackendUnavailable`; other driver errors pass."""
    try:
        yield
    except DBAPIError as exc:
        if is_busy(exc):
            raise busy(engine) from exc
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
    from sqlalchemy.orm import Session

    session = Session(bind=_bind(engine, write), expire_on_commit=False)
    try:
        with _translated(engine), session.begin():
            yield session
    finally:
        session.close()


@contextmanager
def transaction(
    engine: Engine, *, write: bool = False, conflict: str | None = None
) -> Iterator[Connection]:
    """A Core connection in one transaction (no ORM session): for hot paths.

    Same rules as `session_scope`; with `conflict`, a write a concurrent one made
    impossible (a unique key taken meanwhile) is `Conflict(conflict)`, as the registry
    reports it.
    """
    from sqlalchemy.exc import IntegrityError

    try:
        with _translated(engine), _bind(engine, write).begin() as conn:
            yield conn
    except IntegrityError as exc:
        if conflict is None:
            raise
        from secretaries_core.errors import Conflict

        raise Conflict(conflict) from exc


@contextmanager
def connected(engine: Engine) -> Iterator[Connection]:
    """A plain connection for reads, with a lost or locked database translated."""
    with _translated(engine), engine.connect() as conn:
        yield conn
