"""`secretaries bot`: a complete bot by long polling on the library's orchestrator."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import AiogramError, TelegramBadRequest, TelegramUnauthorizedError
from aiogram.utils.token import TokenValidationError

from secretaries_core.errors import BackendUnavailable, InvalidInput
from secretaries_core.orchestrator import Orchestrator
from secretaries_core.queue.client import Queue
from secretaries_core.redact import mask_url, remember, scrub
from secretaries_telegram.approvals import LocalApprovals, QueueApprovals
from secretaries_telegram.delivery import set_grace
from secretaries_telegram.drafts import Drafter
from secretaries_telegram.flood import FloodControl, FloodLimits, LocalFlood, RedisFlood
from secretaries_telegram.gatekeeper import Gatekeeper
from secretaries_telegram.relay import relay, stop_if_cancelled
from secretaries_telegram.router import COMMANDS, create_router

log = logging.getLogger(__name__)
T = TypeVar("T")
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
            orchestrator.admin.remember_reply,
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


def _stop_on_signals(
    dispatcher: Dispatcher, stopped: asyncio.Event, on_stop: Callable[[], None] | None
) -> None:
    """SIGTERM/SIGINT stop the polling, or set `stopped` (then the sender and drafter
    stop); the first one also calls `on_stop`."""
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[None]] = []

    async def stop_polling() -> None:
        try:
            await dispatcher.stop_polling()
        except RuntimeError:  # not polling (webhook mode)
            pass
        except Exception as exc:  # the watchdog still ends the process: say why here
            log.error("stopping the polling failed", exc_info=exc)

    def stop(sig: signal.Signals) -> None:
        if stopping:
            return
        log.info("%s: stopping", sig.name)
        if on_stop is not None:
            on_stop()
        stopped.set()
        stopping.append(loop.create_task(stop_polling()))

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


SECRET_RULE = re.compile(r"[A-Za-z0-9_-]{1,256}")


def _check_webhook_setup(queue_url: str | None, secret: str | None) -> None:
    """Refuse `--webhook` without what the replicas of `serve` need to take updates."""
    if not queue_url:
        raise InvalidInput(
            "--webhook needs the queue (SECRETARIES_QUEUE_URL): serve queues the updates, "
            "workers answer them, this process sends the replies"
        )
    if not secret:
        raise InvalidInput(
            "--webhook needs SECRETARIES_TELEGRAM_WEBHOOK_SECRET (the same on every serve replica)"
        )
    if not SECRET_RULE.fullmatch(secret):
        raise InvalidInput(
            "SECRETARIES_TELEGRAM_WEBHOOK_SECRET must be 1-256 characters A-Z, a-z, 0-9, _ or -"
        )


async def _call(request: Awaitable[T], where: str) -> T:
    """A Bot API call at start-up: refused → InvalidInput, unreachable → BackendUnavailable."""
    try:
        return await request
    except TelegramBadRequest as exc:
        raise InvalidInput(f"the Bot API at {where} refused: {scrub(exc.message)}") from None
    except (AiogramError, OSError, TimeoutError) as exc:
        detail = scrub(str(exc)).splitlines() or [type(exc).__name__]
        raise BackendUnavailable(f"cannot reach the Bot API at {where}: {detail[0]}") from None


async def _webhook_state(bot: Bot, where: str, webhook: str | None, delete: bool) -> None:
    """Long polling cannot start while a webhook is set (Telegram answers 409): say so."""
    if webhook is not None:
        return
    if delete:
        await _call(bot.delete_webhook(drop_pending_updates=False), where)
        log.info("webhook deleted: back to long polling")
        return
    info = await _call(bot.get_webhook_info(), where)
    if info.url:
        raise InvalidInput(
            f"a webhook is set ({mask_url(info.url)}): run `secretaries bot --delete-webhook` "
            "to poll, or `secretaries bot --webhook URL` to keep it"
        )


async def run_bot(
    open_orchestrator: Callable[[], Orchestrator],
    token: str,
    api_url: str | None = None,
    *,
    edit_interval: float = 1.0,
    polling_timeout: int = 30,
    metrics_port: int | None = None,
    on_stop: Callable[[], None] | None = None,
    webhook: str | None = None,
    delete_webhook: bool = False,
    max_connections: int = 40,
) -> None:
    """Check the token, register the commands, then answer updates until SIGTERM/SIGINT.

    The token and the Bot API are checked before `open_orchestrator()` touches the database,
    so a wrong token is reported as such whatever state the database is in. `on_stop` is
    called on the first signal (the CLI arms its stop watchdog there).

    With `webhook` (an https URL reaching `serve`'s POST /telegram/webhook) the webhook is
    registered and this process only sends; `delete_webhook` removes it and polls.
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
        settings = orchestrator.settings
        if webhook is not None:
            _check_webhook_setup(settings.queue_url, settings.telegram_webhook_secret)
        queue = Queue.from_settings(settings) if settings.queue_url else None
        if queue is not None:
            await queue.acheck_partitions()
        await _webhook_state(bot, where, webhook, delete_webhook)
        log.info(
            "bot @%s (id %s) %s %s%s",
            me.username,
            me.id,
            "taking updates by webhook at" if webhook else "polling",
            mask_url(webhook) if webhook else where,
            f", answering through the queue {queue.masked}" if queue else "",
        )
        set_grace(settings.outage_grace_seconds)
        if metrics_port is not None:
            # The flood control's waits, the queue of sends and the dropped replies live in
            # this process: an operator scrapes them here.
            orchestrator.metrics.serve(metrics_port, settings.metrics_host)
            log.info("metrics on http://%s:%d/metrics", settings.metrics_host, metrics_port)
        bot.session.middleware(Gatekeeper(flood_control(bot, queue, orchestrator)))
        dispatcher = Dispatcher()
        dispatcher.include_router(
            create_router(
                orchestrator,
                edit_interval=edit_interval,
                queue=queue,
                drafts=settings.telegram_drafts,
                approvals=(
                    QueueApprovals(queue, orchestrator.store)
                    if queue is not None
                    else LocalApprovals(bot, settings.confirm_timeout_seconds)
                ),
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
        stopped = asyncio.Event()
        _stop_on_signals(dispatcher, stopped, on_stop)
        # message_reaction is only sent to bots that ask for it (feedback).
        used = dispatcher.resolve_used_update_types()
        try:
            if webhook is not None:
                await _call(
                    bot.set_webhook(
                        webhook,
                        secret_token=settings.telegram_webhook_secret,
                        allowed_updates=used,
                        max_connections=max_connections,
                    ),
                    where,
                )
                await stopped.wait()  # the replicas of `serve` take the updates
            else:
                await dispatcher.start_polling(
                    bot,
                    polling_timeout=polling_timeout,
                    handle_signals=False,
                    close_bot_session=False,
                    allowed_updates=used,
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
