"""What every command shares: the settings, a lazily opened registry, and error mapping."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer

from secretaries_cli import output
from secretaries_core.config import Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from secretaries_core.catalog.registry import SecretaryRegistry
    from secretaries_core.context.base import ContextStore
    from secretaries_core.orchestrator import Orchestrator
from secretaries_core.catalog.refs import UserRef, parse_user_ref
from secretaries_core.errors import (
    BackendUnavailable,
    InvalidInput,
    SecretariesError,
    UnstorableInput,
)
from secretaries_core.plumbing.durations import parse_duration

P = ParamSpec("P")
R = TypeVar("R")

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3


@dataclass
class Runtime:
    """Per-invocation state, stored on Typer's context object."""

    settings: Settings
    _engine: Engine | None = field(default=None, repr=False)
    _registry: SecretaryRegistry | None = field(default=None, repr=False)
    _contexts: ContextStore | None = field(default=None, repr=False)

    def engine(self) -> Engine:
        """The configured database, opened (and checked) on first use. Commands on Core
        tables alone (tools, tokens) take this, not `registry()`: the registry loads the
        ORM, SQLModel and pydantic, which cost more CPU than SQLAlchemy itself."""
        if self._engine is None:
            # Imported here so that `--help` and usage errors never load SQLAlchemy.
            from secretaries_core.plumbing.schema import open_database

            self._engine = open_database(self.settings)
        return self._engine

    def registry(self) -> SecretaryRegistry:
        """The registry on the configured database, opened (and checked) on first use."""
        if self._registry is None:
            from secretaries_core.catalog.registry import SecretaryRegistry

            self._registry = SecretaryRegistry(self.engine())
        return self._registry

    def contexts(self) -> ContextStore:
        """The context store of the settings (the database unless --context-url says otherwise)."""
        if self._contexts is None:
            from secretaries_core.context import open_context_store

            url = self.settings.context_url
            self._contexts = open_context_store(
                url,
                policy=self.settings.context_policy,
                engine=None if url else self.engine(),
                prefix=self.settings.redis_prefix,
                remember=self.settings.redis_remember_contexts,
            )
        return self._contexts

    def orchestrator(self) -> Orchestrator:
        """An orchestrator on the registry and the context store."""
        from secretaries_core.orchestrator import Orchestrator

        return Orchestrator(self.registry(), self.contexts(), self.settings)

    def close(self) -> None:
        """Release the database connections (the CLI runs one command per process)."""
        if self._contexts is not None:
            self._contexts.close()
            self._contexts = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
            self._registry = None


def runtime(ctx: typer.Context) -> Runtime:
    """The runtime the root callback stored."""
    found = ctx.find_object(Runtime)
    assert found is not None, "root callback did not run"
    return found


def exit_code_for(exc: SecretariesError) -> int:
    """SPEC.md exit codes: 3 for an unreachable backend, 2 for input no store can hold,
    1 for everything else refused."""
    if isinstance(exc, UnstorableInput):
        return EXIT_USAGE
    return EXIT_UNAVAILABLE if isinstance(exc, BackendUnavailable) else EXIT_FAILED


# What Ctrl-C leaves behind, per command (by its function's name); other commands are one
# transaction or one call, and say only "interrupted".
INTERRUPTED = {
    "migrate_users": "interrupted; finished batches are kept, run the command again to resume",
    "purge": "interrupted; the batches purged so far stay purged, run it again to finish",
    "import_": "interrupted; nothing was imported (the import is one transaction)",
    "chat": "interrupted; nothing of this message was stored",
    "eval_": "interrupted; no eval result was kept",
    "replay": "interrupted; nothing was stored",
}


def guarded(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn library errors into an `Error:` line and the SPEC.md exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except SecretariesError as exc:
            problems = exc.problems if isinstance(exc, InvalidInput) else []
            output.error(str(exc), problems)
            raise typer.Exit(exit_code_for(exc)) from None
        except Exception as exc:
            refused = _validation_problems(exc)
            if refused is not None:
                # A library model refused a value (a name over 100 characters, say): the
                # same one-line answer as any invalid input, never pydantic's traceback.
                output.error("invalid input: " + "; ".join(refused))
                raise typer.Exit(EXIT_FAILED) from None
            if not _driver_error(exc):
                raise
            # Escaped the library's translation (it should not): one line, the URL masked.
            from secretaries_core.redact import mask_url

            first = (str(getattr(exc, "orig", None) or exc).splitlines() or ["?"])[0]
            output.error(f"database error: {mask_url(first)}")
            raise typer.Exit(EXIT_UNAVAILABLE) from None
        except KeyboardInterrupt:
            output.error(INTERRUPTED.get(fn.__name__, "interrupted"))
            raise typer.Exit(130) from None

    return wrapper


def _validation_problems(exc: Exception) -> list[str] | None:
    """One line per problem of a pydantic ValidationError, else None (checked through
    sys.modules: importing pydantic here would slow down `--help`)."""
    import sys

    found = sys.modules.get("pydantic")
    if found is None or not isinstance(exc, found.ValidationError):
        return None
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ())) or "value"
        lines.append(f"{where}: {error.get('msg', 'invalid')}")
    return lines


def _driver_error(exc: Exception) -> bool:
    # Checked through sys.modules: importing SQLAlchemy here would slow down `--help`.
    import sys

    found = sys.modules.get("sqlalchemy.exc")
    return found is not None and isinstance(exc, found.DBAPIError)


class App(typer.Typer):
    """A Typer app whose commands all go through `guarded`."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable[P, R]], Callable[P, R]]:  # type: ignore[override]
        """Register a command wrapped by `guarded`."""
        register = super().command(*args, **kwargs)

        def decorator(fn: Callable[P, R]) -> Callable[P, R]:
            register(guarded(fn))
            return fn

        return decorator


def new_app(help_text: str) -> App:
    """A sub-app with the project's defaults."""
    return App(help=help_text, no_args_is_help=True, pretty_exceptions_show_locals=False)


def duration_arg(value: str) -> timedelta:
    """Typer parser for DURATION (`90s`, `90m`, `12h`, `7d`); a bad one is exit 2."""
    try:
        return parse_duration(value)
    except InvalidInput as exc:
        raise typer.BadParameter(str(exc)) from None


def user_arg(value: str) -> UserRef:
    """Typer parser for USER: a positive Telegram id or @username, else a usage error (exit 2)."""
    try:
        return parse_user_ref(value)
    except InvalidInput as exc:
        raise typer.BadParameter(str(exc)) from None


UserArg = Annotated[
    Any, typer.Argument(parser=user_arg, metavar="USER", help="Telegram id or @username.")
]
"""A USER argument: parsed by `user_arg`, shown as USER in help."""
