"""`chat USER MESSAGE`: handle a message as if the user had sent it to the bot."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from secretaries_cli import output
from secretaries_cli.runtime import App, UserArg, runtime

if TYPE_CHECKING:
    from secretaries_core.orchestrator import Orchestrator
    from secretaries_core.tools.approval import Approver


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
        from secretaries_core.tools.approval import fixed

        approver = fixed(approve)
        rt = runtime(ctx)
        # An @username must be known; a numeric id may be new and is registered by handle().
        telegram_id = rt.registry().get_user(user).telegram_id if isinstance(user, str) else user
        orchestrator = rt.orchestrator()
        try:
            if not json and sys.stdout.isatty():
                # On a terminal the reply appears as the model writes it.
                output.stream_text(_pieces(orchestrator, telegram_id, message, approver))
                return
            reply = orchestrator.run_sync(
                orchestrator.ahandle(telegram_id, message, approver=approver)
            )
        finally:
            orchestrator.close()
        if json:
            from secretaries_core.catalog.schemas import ReplyOut

            output.emit_json(
                ReplyOut(reply=reply.text, secretary=reply.secretary, source=reply.source)
            )
        else:
            if sys.stdout.isatty():
                output.say(reply.text)
            else:
                output.verbatim(reply.text)


def _pieces(
    orchestrator: Orchestrator, telegram_id: int, message: str, approver: Approver
) -> Iterator[str]:
    """The streamed reply as a plain iterator, driven on the orchestrator's own loop."""
    stream = orchestrator.astream(telegram_id, message)
    stream.approver = approver
    # The secretary's tool calls, as they start and end, on stderr (the reply stays clean).
    stream.on_tool = lambda function, state: typer.echo(f"[tool {function}: {state}]", err=True)
    while True:
        try:
            yield orchestrator.run_sync(anext(stream))
        except StopAsyncIteration:
            return
