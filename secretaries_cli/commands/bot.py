"""`bot`: run the Telegram bot (long polling) on the configured database and store."""

from __future__ import annotations

from typing import Annotated

import typer

from secretaries_cli.runtime import App, runtime


def register(app: App) -> None:
    """Add `bot` to the root app."""

    @app.command("bot")
    def bot(
        ctx: typer.Context,
        token: Annotated[
            str | None,
            typer.Option(
                "--token",
                envvar="SECRETARIES_TELEGRAM_TOKEN",
                show_envvar=True,
                metavar="TOKEN",
                help="The bot's token from @BotFather.",
                show_default=False,
            ),
        ] = None,
        api_url: Annotated[
            str | None,
            typer.Option(
                "--api-url",
                envvar="SECRETARIES_TELEGRAM_API_URL",
                show_envvar=True,
                metavar="URL",
                help="Bot API server (default: Telegram's own).",
            ),
        ] = None,
        edit_interval: Annotated[
            float,
            typer.Option("--edit-interval", min=0.2, help="Seconds between streamed edits."),
        ] = 1.0,
    ) -> None:
        """Run the Telegram bot (the `telegram` extra): users pick their secretary."""
        import asyncio

        from secretaries_core.errors import InvalidInput

        try:
            from secretaries_telegram.run import run_bot
        except ImportError as exc:
            raise InvalidInput(
                f"the Telegram front is not installed ({exc.name}): "
                "pip install 'secretaries-platform[telegram]'"
            ) from None
        from secretaries_cli.output import service_logging

        service_logging()
        rt = runtime(ctx)
        asyncio.run(run_bot(rt.orchestrator, token or "", api_url, edit_interval=edit_interval))
