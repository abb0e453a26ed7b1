"""`tokens`: scoped API tokens (admin, ingress, read), stored only as a hash."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from secretaries_cli import output, render
from secretaries_cli.options import JsonFlag
from secretaries_cli.runtime import App, new_app, runtime

app = new_app("Scoped API tokens: admin (everything), ingress (the bot's calls), read (GETs).")
NameArg = Annotated[str, typer.Argument(help="The token's name (for list and revoke).")]


class ScopeName(StrEnum):
    """What a token may call."""

    admin = "admin"
    ingress = "ingress"
    read = "read"


def register(root: App) -> None:
    """Add the `tokens` group to the root app."""
    root.add_typer(app, name="tokens")


@app.command("create")
def create(
    ctx: typer.Context,
    name: NameArg,
    scope: Annotated[
        ScopeName,
        typer.Option(
            "--scope",
            help="admin: everything; ingress: POST /api/updates, /api/messages, /api/feedback; "
            "read: every GET.",
        ),
    ],
    json: JsonFlag = False,
) -> None:
    """Make a token and print it once (only its hash is stored).

    Example: secretaries tokens create bot-front --scope ingress
    """
    from secretaries_core.catalog.api_tokens import ApiTokens

    token = ApiTokens(runtime(ctx).engine()).create(name, scope.value)
    if json:
        output.emit_json({"name": name, "scope": scope.value, "token": token})
        return
    output.say(f"Token {name} ({scope.value}); shown only now, keep it safe:")
    output.say(token)


@app.command("list")
def list_(ctx: typer.Context, json: JsonFlag = False) -> None:
    """The tokens by name and scope (never the tokens themselves).

    Example: secretaries tokens list --json
    """
    from secretaries_core.catalog.api_tokens import ApiTokens

    found = ApiTokens(runtime(ctx).engine()).list()
    if json:
        output.emit_json([t.as_dict() for t in found])
        return
    render.tokens(found)


@app.command("revoke")
def revoke(ctx: typer.Context, name: NameArg) -> None:
    """Delete a token: it stops working within 2 seconds on every API process.

    Example: secretaries tokens revoke bot-front
    """
    from secretaries_core.catalog.api_tokens import ApiTokens

    ApiTokens(runtime(ctx).engine()).revoke(name)
    output.say(f"Token {name} revoked.")
