"""Alembic, driven from code: upgrade, downgrade, current revision and the up-to-date check."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import DBAPIError

from secretaries_core.config import Settings
from secretaries_core.errors import InvalidInput, SchemaOutOfDate
from secretaries_core.plumbing.db import check_reachable, make_engine, unavailable

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory


def migrations_dir() -> Path:
    """Where the Alembic scripts are: inside the installed package, or at the checkout's top."""
    # Installed: secretaries_core/migrations (the wheel carries them); checkout: ./migrations.
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "migrations", here.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("the Alembic migrations directory is missing from this installation")


def alembic_config(engine: Engine) -> Config:
    """An Alembic config whose env.py runs on `engine` instead of reading a URL."""
    from alembic.config import Config

    config = Config()
    # Alembic's options go through configparser, where `%` starts an interpolation: a path
    # holding `%` is escaped, and the URL (a percent-encoded password) is never put there at
    # all — env.py takes the engine itself.
    config.set_main_option("script_location", str(migrations_dir()).replace("%", "%%"))
    config.attributes["engine"] = engine
    return config


def _script(engine: Engine) -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(engine))


# The newest migration; a test checks it against Alembic's script directory. Knowing it
# here lets every command check the schema with one query instead of importing Alembic.
HEAD_REVISION = "0011"


def head_revision(engine: Engine | None = None) -> str:
    """The newest revision the installed code knows."""
    return HEAD_REVISION


def script_head(engine: Engine) -> str | None:
    """The head according to Alembic's script directory (what HEAD_REVISION must equal)."""
    return _script(engine).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for a blank database (one query)."""
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError as exc:
        raise unavailable(engine, exc) from exc


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run migrations forward to `revision`."""
    if revision in ("head", HEAD_REVISION) and current_revision(engine) == HEAD_REVISION:
        return  # already there (every deployment's start-up): no need to load Alembic
    from alembic import command
    from alembic.util import CommandError

    try:
        command.upgrade(alembic_config(engine), revision)
    except CommandError as exc:
        raise InvalidInput(f"cannot upgrade to {revision!r}: {exc}") from exc
    except DBAPIError as exc:
        raise unavailable(engine, exc) from exc


def downgrade(engine: Engine, revision: str) -> None:
    """Run migrations backward to `revision` (`base` removes every table)."""
    current = current_revision(engine)
    if current is not None and (
        revision == current or (revision == "head" and current == HEAD_REVISION)
    ):
        return  # already there: nothing to run, no need to load Alembic
    from alembic import command
    from alembic.util import CommandError

    try:
        command.downgrade(alembic_config(engine), revision)
    except CommandError as exc:
        raise InvalidInput(f"cannot downgrade to {revision!r}: {exc}") from exc
    except DBAPIError as exc:
        raise unavailable(engine, exc) from exc


def ensure_current(engine: Engine, *, auto_upgrade: bool) -> None:
    """Make sure the schema is at head: upgrade it when allowed, otherwise refuse."""
    current = current_revision(engine)
    head = head_revision(engine)
    if current == head:
        return
    if auto_upgrade:
        upgrade(engine, "head")
        return
    state = "has no schema" if current is None else f"is at revision {current}, not {head}"
    raise SchemaOutOfDate(f"the database {state}", hint="; run `secretaries db upgrade`")


def open_database(settings: Settings) -> Engine:
    """An engine for the configured database, checked reachable and at the latest schema.

    The embedded default is created and upgraded on the spot; any other database must be
    upgraded explicitly, so a shared server is never migrated behind its operator's back.
    """
    _check_location(settings)
    engine = make_engine(settings.database_url)
    check_reachable(engine)
    ensure_current(engine, auto_upgrade=settings.is_embedded_default)
    return engine


def _check_location(settings: Settings) -> None:
    """A usable place for the database, said plainly before anything is created.

    The embedded default's data dir is created (an unusable one is `InvalidInput` naming
    it); an SQLite URL given explicitly must point into a directory that exists — a typo
    in a path must not create a new, empty database somewhere.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from secretaries_core.redact import mask_url

    if settings.is_embedded_default:
        try:
            settings.home.mkdir(parents=True, exist_ok=True)
            if not settings.home.is_dir():
                raise NotADirectoryError(str(settings.home))
        except OSError as exc:
            raise InvalidInput(
                f"cannot use the data directory {settings.home} ({exc.strerror or exc}); "
                "set SECRETARIES_HOME to a writable directory"
            ) from None
        return
    try:
        parsed = make_url(settings.database_url)
        name = parsed.get_backend_name()
    except (ArgumentError, ValueError):
        return  # make_engine says what is wrong with it
    if name not in ("sqlite", "postgresql"):
        raise InvalidInput(
            f"unsupported database {mask_url(settings.database_url)!r}: use sqlite:///PATH or "
            "postgresql://USER:PASSWORD@HOST/DB"
        )
    if name == "sqlite" and parsed.database not in (None, "", ":memory:"):
        folder = Path(parsed.database).expanduser().parent
        if not folder.is_dir():
            raise InvalidInput(
                f"the directory {folder} of the database {mask_url(settings.database_url)} "
                "does not exist; create it first"
            )
