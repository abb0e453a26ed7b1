"""What a command's run shares without Typer: its settings, lazily opened stores, and
the SPEC.md answer to a failure (the `Error:` line and the exit code).

Split from `runtime` so the quick path (quick.py) runs command bodies (`plain.py`) with
the same state and reports their failures exactly as the Typer app does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from secretaries_cli.render import error
from secretaries_core.config import Settings
from secretaries_core.errors import (
    BackendUnavailable,
    InvalidInput,
    SecretariesError,
    UnstorableInput,
)

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from secretaries_core.catalog.refs import UserRef
    from secretaries_core.catalog.registry import SecretaryRegistry
    from secretaries_core.context.base import ContextStore
    from secretaries_core.orchestrator import Orchestrator

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3


@dataclass
class Runtime:
    """Per-invocation state (stored on Typer's context object by the root callback)."""

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

    def serving_orchestrator(self) -> Orchestrator:
        """An orchestrator on the message path's catalog alone (`ServingCatalog`: no ORM,
        so `chat`, `eval` and `replay` start fast); the caller closes it."""
        from secretaries_core.catalog.serving import ServingCatalog
        from secretaries_core.orchestrator import Orchestrator
        from secretaries_core.plumbing.metrics import Metrics

        # Nobody scrapes a one-shot command's metrics: they are not recorded.
        return Orchestrator(
            ServingCatalog(self.engine()),
            self.contexts(),
            self.settings,
            metrics=Metrics(record=False),
        )

    def telegram_id(self, user: UserRef) -> int:
        """The Telegram id of a registered user (`UnknownUser` when there is none)."""
        from secretaries_core.catalog import writes
        from secretaries_core.plumbing.db import connected

        with connected(self.engine()) as conn:
            return int(writes.user(conn, user).telegram_id)

    def close(self) -> None:
        """Release the database connections (the CLI runs one command per process)."""
        if self._contexts is not None:
            self._contexts.close()
            self._contexts = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
            self._registry = None


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


def failure_code(exc: BaseException, command: str) -> int | None:
    """Print the `Error:` line for a failure of `command` (its function's name); the exit
    code, or None when it is not one the contract names (the caller re-raises it)."""
    if isinstance(exc, SecretariesError):
        error(str(exc), exc.problems if isinstance(exc, InvalidInput) else [])
        return exit_code_for(exc)
    if isinstance(exc, KeyboardInterrupt):
        error(INTERRUPTED.get(command, "interrupted"))
        return 130
    if not isinstance(exc, Exception):
        return None
    refused = _validation_problems(exc)
    if refused is not None:
        # A library model refused a value (a name over 100 characters, say): the same
        # one-line answer as any invalid input, never pydantic's traceback.
        error("invalid input: " + "; ".join(refused))
        return EXIT_FAILED
    if not _driver_error(exc):
        return None
    # Escaped the library's translation (it should not): one line, the URL masked.
    from secretaries_core.redact import mask_url

    first = (str(getattr(exc, "orig", None) or exc).splitlines() or ["?"])[0]
    error(f"database error: {mask_url(first)}")
    return EXIT_UNAVAILABLE


def _validation_problems(exc: Exception) -> list[str] | None:
    """One line per problem of a pydantic ValidationError, else None (checked through
    sys.modules: importing pydantic here would slow down `--help`)."""
    import sys

    found = sys.modules.get("pydantic")
    if found is None or not isinstance(exc, found.ValidationError):
        return None
    lines = []
    for problem in exc.errors():
        where = ".".join(str(part) for part in problem.get("loc", ())) or "value"
        lines.append(f"{where}: {problem.get('msg', 'invalid')}")
    return lines


def _driver_error(exc: Exception) -> bool:
    # Checked through sys.modules: importing SQLAlchemy here would slow down `--help`.
    import sys

    found = sys.modules.get("sqlalchemy.exc")
    return found is not None and isinstance(exc, found.DBAPIError)
