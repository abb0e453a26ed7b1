"""What every Typer command shares: the runtime on its context, error mapping, parsers."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any, ParamSpec, TypeVar

import typer

from secretaries_cli.session import Runtime, failure_code
from secretaries_core.catalog.refs import UserRef, parse_user_ref
from secretaries_core.errors import InvalidInput
from secretaries_core.plumbing.durations import parse_duration

__all__ = ["Runtime"]  # commands take it from here, beside `runtime(ctx)`

P = ParamSpec("P")
R = TypeVar("R")


def runtime(ctx: typer.Context) -> Runtime:
    """The runtime the root callback stored."""
    found = ctx.find_object(Runtime)
    assert found is not None, "root callback did not run"
    return found


def guarded(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn library errors into an `Error:` line and the SPEC.md exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (Exception, KeyboardInterrupt) as exc:
            code = failure_code(exc, fn.__name__)
            if code is None:
                raise
            raise typer.Exit(code) from None

    return wrapper


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
