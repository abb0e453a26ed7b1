"""`users` commands: add, import, list, limit, delete."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from secretaries_cli import output, render
from secretaries_cli.options import JsonFlag, LimitOpt, OffsetOpt
from secretaries_cli.runtime import UserArg, new_app, runtime
from secretaries_core.catalog.refs import validate_telegram_id
from secretaries_core.errors import InvalidInput

app = new_app("Register and list users.")


def _telegram_id(value: int) -> int:
    try:
        return validate_telegram_id(value)
    except InvalidInput as exc:
        raise typer.BadParameter(str(exc)) from None


@app.command("add")
def add(
    ctx: typer.Context,
    telegram_id: Annotated[
        int, typer.Argument(callback=_telegram_id, help="The user's numeric Telegram id.")
    ],
    username: Annotated[
        str | None, typer.Option("--username", help="Their @username (the @ is optional).")
    ] = None,
    json: JsonFlag = False,
) -> None:
    """Register a user (idempotent).

    Example: secretaries users add 42 --username ann
    """
    from secretaries_core.catalog.writes import register
    from secretaries_core.plumbing.timeutil import utcnow

    # On Core, not the registry: nothing in this process listens for the change.
    found = register(runtime(ctx).engine(), telegram_id, username, utcnow())
    user, status, moved = found.row, found.status, found.username_moved_from
    if json:
        doc = {"telegram_id": user.telegram_id, "username": user.username, "status": status}
        output.emit_json({**doc, "username_moved_from": moved})
        return
    output.say(f"User {user.telegram_id} {status}.")
    if moved is not None:
        output.say(f"@{user.username} was held by user {moved}; their username is now cleared.")


@app.command("import")
def import_(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, readable=True, help="CSV: telegram_id,username."
        ),
    ],
    json: JsonFlag = False,
) -> None:
    """Register users from a CSV file with the header telegram_id,username; all or nothing.

    Example: secretaries users import users.csv
    """
    from secretaries_core.catalog.users_csv import parse_users_csv

    try:
        with file.open(encoding="utf-8", newline="") as handle:
            rows = parse_users_csv(handle)
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{file} is not UTF-8 text: {exc}") from None
    from secretaries_core.catalog.writes import import_users
    from secretaries_core.plumbing.db import transaction
    from secretaries_core.plumbing.timeutil import utcnow

    # On Core, not the registry: nothing in this process listens for the change.
    raced = "users were added concurrently; run the import again"
    with transaction(runtime(ctx).engine(), write=True, conflict=raced) as conn:
        result = import_users(conn, rows, utcnow())
    if json:
        output.emit_json(result)
    else:
        output.say(
            f"Imported {len(rows)} row(s): {result['created']} created, "
            f"{result['updated']} updated, {result['unchanged']} unchanged."
        )


@app.command("list")
def list_(
    ctx: typer.Context,
    secretary: Annotated[
        str | None, typer.Option("--secretary", metavar="SEC", help="Only users linked to SEC.")
    ] = None,
    limit: LimitOpt = None,
    offset: OffsetOpt = 0,
    json: JsonFlag = False,
) -> None:
    """List users with the secretary of their active link, by Telegram id.

    Example: secretaries users list --secretary alice --limit 50 --offset 100
    """
    rows = runtime(ctx).registry().list_users(secretary=secretary, limit=limit, offset=offset)
    if json:
        output.emit_json(rows)
        return
    render.users((r.telegram_id, r.username, r.created_at, r.secretary) for r in rows)


def _limit(value: str | None) -> int | str | None:
    """A limit option: a whole number >= 0, or `none` to remove the override."""
    if value is None:
        return "unchanged"
    if value.strip().lower() == "none":
        return None
    if not value.isascii() or not value.isdigit():
        raise typer.BadParameter(f"expected a whole number >= 0 or 'none', got {value!r}")
    return int(value)


@app.command("limit")
def limit(
    ctx: typer.Context,
    user: UserArg,
    messages_per_day: Annotated[
        str | None,
        typer.Option("--messages-per-day", metavar="N|none", help="Messages per UTC day."),
    ] = None,
    tokens_per_day: Annotated[
        str | None,
        typer.Option("--tokens-per-day", metavar="N|none", help="Tokens per UTC day."),
    ] = None,
    json: JsonFlag = False,
) -> None:
    """Set or show USER's own daily limits (they win over the secretary's and the global).

    Example: secretaries users limit 42 --messages-per-day 100 --tokens-per-day none
    """
    changes = {
        key: value
        for key, value in (
            ("messages_per_day", _limit(messages_per_day)),
            ("tokens_per_day", _limit(tokens_per_day)),
        )
        if value != "unchanged"
    }
    from secretaries_core.catalog import writes
    from secretaries_core.plumbing.db import transaction
    from secretaries_core.usage.quotas import Quotas

    writes.check_limits(changes)  # type: ignore[arg-type]  # before the database is opened
    engine = runtime(ctx).engine()
    with transaction(engine, write=bool(changes)) as conn:
        if changes:
            telegram_id, limits = writes.set_limits(conn, engine, user, changes)  # type: ignore[arg-type]
        else:
            telegram_id = int(writes.user(conn, user).telegram_id)
            limits = Quotas.read_overrides(conn, telegram_id)
    if json:
        output.emit_json(
            {
                "telegram_id": telegram_id,
                "messages_per_day": limits.messages_per_day,
                "tokens_per_day": limits.tokens_per_day,
            }
        )
        return

    def shown(value: int | None, unit: str) -> str:
        return f"{value} {unit}/day" if value is not None else f"{unit}: not overridden"

    output.say(
        f"User {telegram_id}: {shown(limits.messages_per_day, 'messages')}, "
        f"{shown(limits.tokens_per_day, 'tokens')}."
    )


@app.command("delete")
def delete(
    ctx: typer.Context,
    user: UserArg,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask (for scripts).")] = False,
    json: JsonFlag = False,
) -> None:
    """Erase USER everywhere: the user, their link history, contexts, queued messages,
    replies and dead letters (usage stays only in per-secretary totals).

    Example: secretaries users delete 42 --yes
    """
    from secretaries_cli import plain

    rt = runtime(ctx)
    telegram_id, question = plain.erasure_question(rt, user)
    if not output.confirmed(question, yes=yes):
        raise InvalidInput("nothing erased: confirm on a terminal or pass --yes")
    plain.erase_user(rt, telegram_id, json)
