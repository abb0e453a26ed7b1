"""`chat USER MESSAGE`: handle a message as if the user had sent it to the bot."""

from __future__ import annotations

from typing import Annotated

import typer

from secretaries_cli.runtime import App, UserArg, runtime


def register(app: App) -> None:
    """Add `chat` to the root app."""

    @app.command("chat")
    def chat(
        ctx: typer.Context,
        user: UserArg,
        message: Annotated[str, typer.Argument(help="The text the user sends.")],
        json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
        approve: Annotated[
            bool,
            typer.Option("--approve", help="Approve the calls of --confirm tools (else declined)."),
        ] = False,
    ) -> None:
        """Send MESSAGE as USER (an unknown numeric id is registered) and print the reply.

        Example: secretaries chat 42 'What is on my calendar today?'
        """
        from secretaries_cli import plain

        plain.chat(runtime(ctx), user, message, json, approve)
