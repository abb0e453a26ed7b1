"""`secretaries bot`: a complete bot by long polling on the library's orchestrator."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import AiogramError, TelegramUnauthorizedError
from aiogram.utils.token import TokenValidationError

from secretaries_core.errors import BackendUnavailable, InvalidInput
from secretaries_core.orchestrator import Orchestrator
from secretaries_core.plumbing.db import mask_url
from secretaries_core.queue.client import Queue
from secretaries_core.redact import remember, scrub
from secretaries_telegram.delivery import set_grace
from secretaries_telegram.drafts import Drafter
from secretaries_telegram.flood import FloodControl, FloodLimits, LocalFlood, RedisFlood
from secretaries_telegram.gatekeeper import Gatekeeper
from secretaries_telegram.relay import relay, stop_if_cancelled
from secretaries_telegram.router import COMMANDS, create_router

log = logging.getLogger(__name__)
# The sender finishes its sends in flight for up to 5 s (relay.py); a task that swallowed
# the first cancel is cancelled again.
CANCEL_WAITS_S = (6.0, 1.0, 1.0)
TELEGRAM_API = "https://api.telegram.org"


def _masked(text: str, token: str) -> str:
    return text.replace(token, "***") if token else text


def make_bot(token: str, api_url: str | None) -> Bot:
    """A `Bot` on `api_url` (default: Telegram's); a malformed token is `InvalidInput`."""
    if not token:
        raise InvalidInput(
            "no bot token: pass --token or set SECRETARIES_TELEGRAM_TOKEN (from @BotFather)"
        )
    server = TelegramAPIServer.from_base(api_url) if api_url else None
    session = AiohttpSession(api=server) if server is not None else AiohttpSession()
    try:
        return Bot(token, session=session)
    except TokenValidationError:
        raise InvalidInput(
            "the bot token is malformed: it looks like 123456789:AA… (from @BotFather)"
        ) from None


def _remembering(orchestrator: Orchestrator) -> Callable[[dict[str, str], int], Awaitable[None]]:
    """After the sender delivered a reply: keep which version wrote it (for reactions)."""

    async def remember(fields: dict[str, str], message_id: int) -> None:
        import uuid

        if not fields.get("secretary_id") or not fields.get("version"):
            return
        await orchestrator.hops.run(
            orchestrator.registry.remember_reply,
            int(fields["telegram_id"]),
            message_id,
            uuid.UUID(fields["secretary_id"]),
            int(fields["version"]),
        )

    return remember


def flood_control(bot: Bot, queue: Queue | None, orchestrator: Orchestrator) -> FloodControl:
    """The bot's flood control: in Redis with a queue (shared by every process), else local."""
    limits = FloodLimits.from_settings(orchestrator.settings)
    if queue is None:
        return LocalFlood(limits, orchestrator.metrics)
    return RedisFlood(queue.aclient(), queue.keys.flood(bot.id), limits, orchestrator.metrics)


def supervised(name: str, start: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
    """Run `start()` for as long as the bot runs: restarted (and logged) if it ever ends."""

    async def keep() -> None:
        while True:
            try:
                await start()
                stop_if_cancelled()  # a cancel it swallowed still stops it
                log.error("the %s stopped by itself; starting it again", name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                stop_if_cancelled()
                log.error("the %s failed; starting it again", name, exc_info=exc)
            await asyncio.sleep(1)

    return asyncio.ensure_future(keep())


def _stop_on_signals(dispatcher: Dispatcher, on_stop: Callable[[], None] | None) -> None:
    """SIGTERM/SIGINT stop the polling (then the sender and drafter); the first one also
    calls `on_stop`."""
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[None]] = []

    def stop(sig: signal.Signals) -> None:
        if stopping:
            return
        log.info("%s: stopping", sig.name)
        if on_stop is not None:
            on_stop()
        stopping.append(loop.create_task(dispatcher.stop_polling()))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop, sig)


async def _cancelled(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel `tasks` and wait for them, cancelling again any that swallowed the cancel."""
    for wait in CANCEL_WAITS_S:
        waiting = [t for t in tasks if not t.done()]
        if not waiting:
            return
        for task in waiting:
            task.cancel()
        await asyncio.wait(waiting, timeout=wait)
    for task in tasks:
        if not task.done():
            log.error("a background task ignored three cancels: %r", task)


async def run_bot(
    open_orchestrator: Callable[[], Orchestrator],
    token: str,
    api_url: str | None = None,
    *,
    edit_interval: float = 1.0,
    polling_timeout: int = 30,
    metrics_port: int | None = None,
    on_stop: Callable[[], None] | None = None,
) -> None:
    """Check the token, register the commands, then answer updates until SIGTERM/SIGINT.

    The token and the Bot API are checked before `open_orchestrator()` touches the database,
    so a wrong token is reported as such whatever state the database is in. `on_stop` is
    called on the first signal (the CLI arms its stop watchdog there).
    """
    remember([token])  # given as a flag, it is in no env var the settings taught the scrubber
    bot = make_bot(token, api_url)
    where = mask_url(api_url) if api_url else TELEGRAM_API
    orchestrator: Orchestrator | None = None
    try:
        try:
            me = await bot.get_me()
            await bot.set_my_commands(COMMANDS)
        except TelegramUnauthorizedError:
            raise InvalidInput(
                f"the Bot API at {where} rejected the token; check it with @BotFather"
            ) from None
        except (AiogramError, OSError, TimeoutError) as exc:
            # A 5xx, a gateway's error page (which may echo the URL, token included) or a
            # network failure: the Bot API cannot be used now (exit 3), said in one line.
            detail = scrub(_masked(str(exc), token)).splitlines() or [type(exc).__name__]
            raise BackendUnavailable(f"cannot reach the Bot API at {where}: {detail[0]}") from None
        orchestrator = open_orchestrator()
        queue = (
            Queue.from_settings(orchestrator.settings) if orchestrator.settings.queue_url else None
        )
        if queue is not None:
            await queue.acheck_partitions()
        log.info(
            "bot @%s (id %s) polling %s%s",
            me.username,
            me.id,
            where,
            f", answering through the queue {queue.masked}" if queue else "",
        )
        settings = orchestrator.settings
        set_grace(settings.outage_grace_seconds)
        if metrics_port is not None:
            # The flood control's waits, the queue of sends and the dropped replies live in
            # this process: an operator scrapes them here.
            from prometheus_client import start_http_server

            start_http_server(
                metrics_port, addr="127.0.0.1", registry=orchestrator.metrics.registry
            )
            log.info("metrics on http://127.0.0.1:%d/metrics", metrics_port)
        bot.session.middleware(Gatekeeper(flood_control(bot, queue, orchestrator)))
        dispatcher = Dispatcher()
        dispatcher.include_router(
            create_router(
                orchestrator,
                edit_interval=edit_interval,
                queue=queue,
                drafts=settings.telegram_drafts,
            )
        )
        background: list[asyncio.Task[None]] = []
        if queue is not None:
            on_sent = _remembering(orchestrator)
            background.append(
                supervised(
                    "sender",
                    lambda: relay(
                        bot,
                        queue,
                        metrics=orchestrator.metrics,
                        on_sent=on_sent,
                        max_age=settings.reply_max_age_seconds,
                    ),
                )
            )
            drafter = Drafter(bot, queue, drafts=settings.telegram_drafts, interval=edit_interval)
            background.append(supervised("drafter", drafter.run))
        _stop_on_signals(dispatcher, on_stop)
        try:
            await dispatcher.start_polling(
                bot,
                polling_timeout=polling_timeout,
                handle_signals=False,
                close_bot_session=False,
                # message_reaction is only sent to bots that ask for it (feedback).
                allowed_updates=dispatcher.resolve_used_update_types(),
            )
        finally:
            await _cancelled(background)
            if queue is not None:
                await queue.aclose()
                queue.close()
    finally:
        await bot.session.close()
        if orchestrator is not None:
            await orchestrator.aclose()
