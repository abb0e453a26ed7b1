"""`bot`: run the Telegram bot (long polling) on the configured database and store."""

from __future__ import annotations

from typing import Annotated

import typer

from secretaries_cli.options import MetricsPortOpt
from secretaries_cli.runtime import App, runtime

# Docker's stop waits 10 s before SIGKILL: the bot is gone before, with a word if forced.
STOP_GRACE_S = 9.0


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
        metrics_port: MetricsPortOpt = None,
        webhook: Annotated[
            str | None,
            typer.Option(
                "--webhook",
                envvar="SECRETARIES_TELEGRAM_WEBHOOK_URL",
                show_envvar=True,
                metavar="URL",
                help="Register this https URL (serve's /telegram/webhook) and only send.",
            ),
        ] = None,
        delete_webhook: Annotated[
            bool,
            typer.Option("--delete-webhook", help="Remove the webhook, then poll."),
        ] = False,
        max_connections: Annotated[
            int,
            typer.Option(
                "--max-connections",
                min=1,
                max=100,
                help="With --webhook: Telegram's concurrent connections to it.",
            ),
        ] = 40,
    ) -> None:
        """Run the Telegram bot (the `telegram` extra): users pick their secretary.

        Long polling by default; with --webhook the replicas of `serve` take the updates
        and this process sends the replies.

        Example: SECRETARIES_TELEGRAM_TOKEN=123:AA… secretaries bot
        """
        import asyncio
        import re
        from urllib.parse import urlsplit

        from secretaries_core.errors import InvalidInput
        from secretaries_core.redact import mask_url, remember

        remember([token])  # a flag's value is no env var: the scrubber must be told
        # Checked before aiogram is imported (seconds on a busy machine): a missing or
        # malformed token, or an API URL that is not one, is said at once.
        if not token:
            raise InvalidInput(
                "no bot token: pass --token or set SECRETARIES_TELEGRAM_TOKEN (from @BotFather)"
            )
        if not re.fullmatch(r"\d+:[A-Za-z0-9_-]+", token):
            raise InvalidInput(
                "the bot token is malformed: it looks like 123456789:AA… (from @BotFather)"
            )
        if webhook is not None and delete_webhook:
            raise typer.BadParameter("give --webhook or --delete-webhook, not both")
        if webhook is not None:
            hook = urlsplit(webhook)
            if hook.scheme not in ("http", "https") or not hook.hostname:
                raise typer.BadParameter(
                    f"{mask_url(webhook)!r} is not an http(s) URL", param_hint="--webhook"
                )
        if api_url is not None:
            parts = urlsplit(api_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise typer.BadParameter(
                    f"{mask_url(api_url)!r} is not an http(s) URL", param_hint="--api-url"
                )

        try:
            from secretaries_telegram.run import run_bot
        except ImportError as exc:
            raise InvalidInput(
                f"the Telegram front is not installed ({exc.name}): "
                "pip install 'secretaries-platform[telegram]'"
            ) from None
        from secretaries_cli import watchdog
        from secretaries_cli.output import service_logging

        service_logging()
        rt = runtime(ctx)

        def on_stop() -> None:
            watchdog.arm(asyncio.get_running_loop(), STOP_GRACE_S, "bot")

        asyncio.run(
            run_bot(
                rt.orchestrator,
                token or "",
                api_url,
                edit_interval=edit_interval,
                metrics_port=metrics_port,
                on_stop=on_stop,
                webhook=webhook,
                delete_webhook=delete_webhook,
                max_connections=max_connections,
            )
        )
