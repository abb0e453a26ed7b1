"""`contexts` commands: stats, show, purge."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import typer

from secretaries_cli import output
from secretaries_cli.options import JsonFlag, LimitOpt, OffsetOpt, page
from secretaries_cli.runtime import UserArg, duration_arg, new_app, runtime, user_arg

app = new_app("Conversation contexts: statistics, contents and purge.")
SecOpt = Annotated[str | None, typer.Option("--secretary", metavar="SEC", help="Name or UUID.")]


@app.command("stats")
def stats(ctx: typer.Context, json: JsonFlag = False) -> None:
    """Count contexts and messages, per secretary.

    Example: secretaries contexts stats --json
    """
    from secretaries_core.catalog import admin

    rt = runtime(ctx)
    doc = admin.context_stats(rt.engine(), rt.contexts())
    if json:
        output.emit_json(doc)
        return
    output.table(
        f"{doc.contexts} context(s), {doc.messages} message(s)",
        ["secretary", "contexts", "messages"],
        ((name, c.contexts, c.messages) for name, c in doc.by_secretary.items()),
    )


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
    from secretaries_core.catalog import admin

    rt = runtime(ctx)
    doc = admin.user_contexts(rt.engine(), rt.contexts(), user, secretary)
    for item in doc.contexts:
        item.messages = page(item.messages, limit, offset)
    if json:
        output.emit_json(doc)
        return
    if not doc.contexts:
        output.say(f"No stored context for {user}.")
    for item in doc.contexts:
        output.table(
            f"{item.secretary} — last active {item.last_activity.isoformat(timespec='seconds')}",
            ["at", "role", "content"],
            ((m.at.isoformat(timespec="seconds"), m.role, _shown(m)) for m in item.messages),
        )


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
    from secretaries_core.catalog import admin

    rt = runtime(ctx)
    with output.progress_bar("purging contexts", enabled=not (json or dry_run)) as progress:
        result = admin.purge_contexts(
            rt.engine(),
            rt.contexts(),
            older_than=older_than,
            user=user,
            secretary=secretary,
            dry_run=dry_run,
            progress=progress,
        )
    if json:
        output.emit_json(result)
    elif dry_run:
        output.say(f"Dry run: {result.purged} context(s) would be purged.")
    else:
        output.say(f"Purged {result.purged} context(s).")


def _shown(message: Any) -> str:
    """A message's text; an assistant's tool calls as `→ name(arguments)` lines."""
    calls = (message.metadata or {}).get("tool_calls") if message.metadata else None
    if message.role == "assistant" and calls:
        lines = [
            f"→ {c.get('function', {}).get('name')}({c.get('function', {}).get('arguments')})"
            for c in calls
            if isinstance(c, dict)
        ]
        return "\n".join([message.content, *lines] if message.content else lines)
    return str(message.content)
