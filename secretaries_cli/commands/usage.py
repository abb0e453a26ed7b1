"""`usage`: what users and secretaries consumed, per UTC day."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import typer

from secretaries_cli import output
from secretaries_cli.options import JsonFlag, LimitOpt, OffsetOpt, page
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
    from secretaries_core.catalog.usage_report import usage_report, version_usage

    engine = runtime(ctx).engine()
    report = usage_report(engine, user=user, secretary=secretary, since=since)
    # Paging picks the day rows shown; the totals stay those of the whole report.
    report.days = page(report.days, limit, offset)
    versions = None
    if by_version:
        with engine.connect() as conn:
            versions = version_usage(conn, secretary)
    if json:
        doc = report.as_dict()
        if versions is not None:
            doc["by_version"] = versions
        output.emit_json(doc)
        return
    if versions is not None:
        output.table(
            "per version (lifetime)",
            ["secretary", "version", "messages", "errors", "prompt", "completion", "👍", "👎"],
            (
                (
                    name,
                    v,
                    c["messages"],
                    c["errors"],
                    c["prompt_tokens"],
                    c["completion_tokens"],
                    c["likes"],
                    c["dislikes"],
                )
                for name, rows in versions.items()
                for v, c in rows.items()
            ),
        )
    priced = report.total.cost is not None
    columns = ["day", "secretary", "model", "messages", "prompt", "completion"]
    title = (
        f"{report.total.messages} message(s), {report.total.prompt_tokens} prompt + "
        f"{report.total.completion_tokens} completion tokens"
    )
    if priced:
        columns.append("cost")
        title += f", cost {report.total.cost:.4f}"
    rows = []
    for row in report.days:
        t = row.totals
        cells: list[Any] = [row.day, row.secretary, row.model, t.messages]
        # An asterisk marks counts that include our own estimate (no usage from the provider).
        mark = "*" if t.estimated_calls else ""
        cells += [f"{t.prompt_tokens}{mark}", f"{t.completion_tokens}{mark}"]
        if priced:
            cells.append("" if t.cost is None else f"{t.cost:.4f}")
        rows.append(cells)
    output.table(title, columns, rows)
    if any(r.totals.estimated_calls for r in report.days):
        output.say("* includes estimated counts (the provider reported no usage)")
