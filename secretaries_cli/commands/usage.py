"""`usage`: what users and secretaries consumed, per UTC day."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import typer

from secretaries_cli.options import JsonFlag, LimitOpt, OffsetOpt
from secretaries_cli.runtime import App, duration_arg, runtime, user_arg


def register(app: App) -> None:
    """Add the `usage` command to the root app."""
    app.command("usage")(usage)


def usage(
    ctx: typer.Context,
    user: Annotated[
        Any, typer.Option("--user", metavar="USER", parser=user_arg, help="Only this user.")
    ] = None,
    secretary: Annotated[
        str | None, typer.Option("--secretary", metavar="SEC", help="Only this secretary.")
    ] = None,
    since: Annotated[
        timedelta | None,
        typer.Option(
            "--since",
            metavar="DURATION",
            parser=duration_arg,
            help="Only the UTC days from DURATION ago on: 12h, 1d (yesterday and today), 7d.",
        ),
    ] = None,
    by_version: Annotated[
        bool,
        typer.Option(
            "--by-version", help="Also each secretary version's lifetime counts (all users)."
        ),
    ] = False,
    limit: LimitOpt = None,
    offset: OffsetOpt = 0,
    json: JsonFlag = False,
) -> None:
    """Messages and tokens per UTC day and secretary (with cost when prices are set).

    --limit and --offset page through the day rows; the totals are the whole report's.

    Example: secretaries usage --since 7d --by-version
    """
    from secretaries_cli import plain

    plain.usage(runtime(ctx), user, secretary, since, by_version, limit, offset, json)
