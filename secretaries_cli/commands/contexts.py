"""`contexts` commands: stats, show, purge."""

from __future__ import annotations

import sys
import uuid
from datetime import timedelta
from typing import Annotated, Any

import typer

from secretaries_cli import output
from secretaries_cli.runtime import duration_arg, new_app, runtime, user_arg
from secretaries_core.context.base import ProgressCallback
from secretaries_core.schemas import (
    ContextOut,
    ContextStatsOut,
    CountsOut,
    MessageOut,
    PurgeOut,
    UserContextsOut,
    UserOut,
)

app = new_app("Conversation contexts: statistics, contents and purge.")
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
UserArg = Annotated[Any, typer.Argument(parser=user_arg, help="Telegram id or @username.")]
SecOpt = Annotated[str | None, typer.Option("--secretary", metavar="SEC", help="Name or UUID.")]


def _names(ctx: typer.Context) -> dict[uuid.UUID, str]:
    secretaries = runtime(ctx).registry().list_secretaries(include_inactive=True)
    return {s.id: s.name for s in secretaries}


@app.command("stats")
def stats(ctx: typer.Context, json: JsonFlag = False) -> None:
    """Count contexts and messages, per secretary."""
    found = runtime(ctx).contexts().stats()
    names = _names(ctx)
    doc = ContextStatsOut(
        contexts=found.contexts,
        messages=found.messages,
        by_secretary={
            names.get(sid, str(sid)): CountsOut(contexts=c, messages=m)
            for sid, (c, m) in sorted(found.by_secretary.items(), key=lambda i: names.get(i[0], ""))
        },
    )
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
    ctx: typer.Context, user: UserArg, secretary: SecOpt = None, json: JsonFlag = False
) -> None:
    """Show USER's stored messages (every secretary's, or one with --secretary)."""
    rt = runtime(ctx)
    person = rt.registry().get_user(user)
    sec_id = rt.registry().get_secretary(secretary).id if secretary else None
    names = _names(ctx)
    store = rt.contexts()
    contexts = [
        ContextOut(
            secretary_id=summary.secretary_id,
            secretary=names.get(summary.secretary_id, str(summary.secretary_id)),
            last_activity=summary.last_activity,
            messages=[
                MessageOut(
                    role=m.role,
                    content=m.content,
                    at=m.at,
                    metadata=dict(m.metadata) if m.metadata else None,
                )
                for m in store.read(person.telegram_id, summary.secretary_id)
            ],
        )
        for summary in store.iter_contexts(user_id=person.telegram_id, secretary_id=sec_id)
    ]
    doc = UserContextsOut(user=UserOut.of(person), contexts=contexts)
    if json:
        output.emit_json(doc)
        return
    if not contexts:
        output.say(f"No stored context for {user}.")
    for item in contexts:
        output.table(
            f"{item.secretary} — last active {item.last_activity.isoformat(timespec='seconds')}",
            ["at", "role", "content"],
            ((m.at.isoformat(timespec="seconds"), m.role, m.content) for m in item.messages),
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
    """Delete idle contexts, or all of one user's / one secretary's."""
    rt = runtime(ctx)
    user_id = rt.registry().get_user(user).telegram_id if user is not None else None
    sec_id = rt.registry().get_secretary(secretary).id if secretary else None
    store = rt.contexts()

    def run(progress: ProgressCallback | None) -> int:
        return store.purge(
            older_than=older_than,
            user_id=user_id,
            secretary_id=sec_id,
            dry_run=dry_run,
            progress=progress,
        )

    if json or dry_run or not sys.stdout.isatty():
        purged = run(None)
    else:
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task("purging contexts", total=None)
            purged = run(lambda done, total: bar.update(task, completed=done, total=total))
    if json:
        output.emit_json(PurgeOut(purged=purged, dry_run=dry_run))
    elif dry_run:
        output.say(f"Dry run: {purged} context(s) would be purged.")
    else:
        output.say(f"Purged {purged} context(s).")
