"""`db` commands: Alembic upgrade, downgrade and current on the configured database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from secretaries_cli import output
from secretaries_cli.options import JsonFlag
from secretaries_cli.runtime import new_app, runtime

if TYPE_CHECKING:
    from sqlalchemy import Engine

app = new_app("Schema migrations (Alembic) on the configured database.")


def _engine(ctx: typer.Context) -> Engine:
    from secretaries_core.plumbing.db import check_reachable, make_engine

    engine = make_engine(runtime(ctx).settings.database_url)
    check_reachable(engine)
    return engine


RevArg = Annotated[
    str,
    typer.Argument(metavar="REV", help="An Alembic revision: head, base, or an id like 0006."),
]


@app.command("upgrade")
def upgrade(ctx: typer.Context, revision: RevArg = "head", json: JsonFlag = False) -> None:
    """Upgrade the schema to REV (default: head).

    JSON: {"from", "to", "changed", "nonconforming_names"}.

    Example: secretaries --database-url postgresql://db/secretaries db upgrade
    """
    from secretaries_core.catalog.reads import nonconforming_names
    from secretaries_core.plumbing import schema
    from secretaries_core.redact import mask_url

    engine = _engine(ctx)
    before = schema.current_revision(engine)
    schema.upgrade(engine, revision)
    after = schema.current_revision(engine)
    where = mask_url(engine.url)
    with engine.connect() as conn:
        problems = nonconforming_names(conn)
    if json:
        output.emit_json(
            {
                "from": before,
                "to": after,
                "changed": before != after,
                "nonconforming_names": problems,
            }
        )
        return
    if before == after:
        output.say(f"{where} is already at {after}.")
    else:
        output.say(f"Upgraded {where} from {before or 'an empty database'} to {after}.")
    if problems:
        output.say(
            "Secretaries that break today's name rules (they keep working; rename them "
            "with `secretaries update SEC --name NEW` when convenient):"
        )
        for problem in problems:
            output.say(f"  {problem}")


@app.command("downgrade")
def downgrade(
    ctx: typer.Context,
    revision: RevArg,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask (for scripts).")] = False,
    json: JsonFlag = False,
) -> None:
    """Downgrade the schema to REV (`base` removes every table); asks first.

    JSON: {"from", "to", "changed"}.

    Example: secretaries db downgrade 0005 --yes
    """
    from secretaries_core.errors import InvalidInput
    from secretaries_core.plumbing import schema
    from secretaries_core.redact import mask_url

    engine = _engine(ctx)
    question = (
        f"Downgrade {mask_url(engine.url)} to {revision}? Tables dropped on the way lose their "
        "data (below 0003: usage and quotas; below 0002: every stored context)"
    )
    if not output.confirmed(question, yes=yes):
        raise InvalidInput("not downgraded: confirm on a terminal or pass --yes")
    before = schema.current_revision(engine)
    schema.downgrade(engine, revision)
    after = schema.current_revision(engine)
    if json:
        output.emit_json({"from": before, "to": after, "changed": before != after})
        return
    output.say(f"Downgraded {mask_url(engine.url)} to {after or 'base'}.")


@app.command("current")
def current(ctx: typer.Context, json: JsonFlag = False) -> None:
    """Show the schema revision of the database and the newest one known.

    Example: secretaries db current --json
    """
    from secretaries_core.plumbing import schema

    engine = _engine(ctx)
    now, head = schema.current_revision(engine), schema.head_revision(engine)
    if json:
        output.emit_json({"current": now, "head": head, "up_to_date": now == head})
    else:
        state = "up to date" if now == head else "run `secretaries db upgrade`"
        output.say(f"{now or '(empty)'} (head {head}, {state})")
