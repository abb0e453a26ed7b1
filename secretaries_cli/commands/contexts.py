"""`contexts` commands: stats, show, purge."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import typer

from secretaries_cli import plain
from secretaries_cli.options import JsonFlag, LimitOpt, OffsetOpt
from secretaries_cli.runtime import UserArg, duration_arg, new_app, runtime, user_arg

app = new_app("Conversation contexts: statistics, contents and purge.")
SecOpt = Annotated[str | None, typer.Option("--secretary", metavar="SEC", help="Name or UUID.")]


@app.command("stats")
def stats(ctx: typer.Context, json: JsonFlag = False) -> None:
    """Count contexts and messages, per secretary.

    Example: secretaries contexts stats --json
    """
    plain.contexts_stats(runtime(ctx), json)


@app.command("show")
def show(
    ctx: typer.Context,
    user: UserArg,
    secretary: SecOpt = None,
    limit: LimitOpt = None,
    offset: OffsetOpt = 0,
    json: JsonFlag = False,
) -> None:
    """Show USER's stored messages (every secretary's, or one with --secretary).

    --limit and --offset page through each conversation's messages, oldest first.

    Example: secretaries contexts show 42 --secretary alice --limit 20
    """
    plain.contexts_show(runtime(ctx), user, secretary, limit, offset, json)


@app.command("purge")
def purge(
    ctx: typer.Context,
    older_than: Annotated[
        timedelta | None,
        typer.Option(
            "--older-than",
            metavar="DURATION",
            parser=duration_arg,
            help="Idle longer than this: 90s, 90m, 12h, 7d (default: the retention).",
        ),
    ] = None,
    user: Annotated[
        Any, typer.Option("--user", metavar="USER", parser=user_arg, help="Only this user's.")
    ] = None,
    secretary: SecOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count only, delete nothing.")] = False,
    json: JsonFlag = False,
) -> None:
    """Delete idle contexts, or all of one user's / one secretary's.

    Example: secretaries contexts purge --older-than 30d --dry-run
    """
    plain.contexts_purge(runtime(ctx), older_than, user, secretary, dry_run, json)
