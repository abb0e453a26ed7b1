"""Sending to the Bot API through its failures: what to wait out, what to retry, what to drop.

- 429: wait what Telegram asks (`retry_after`), then again, for as long as the grace lasts;
- 5xx and network errors (timeouts, refused connections): retry with capped exponential
  backoff within the grace (`SECRETARIES_OUTAGE_GRACE` for what a user waits on now; a
  queued reply is kept until it is `SECRETARIES_REPLY_MAX_AGE` old, see relay.py);
- 403 (the user blocked the bot, the bot was kicked) and 400 (chat not found, a user
  deactivated, anything else Telegram will refuse again): `Undeliverable` at once, so that
  reply is dropped, counted, and nothing else waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
)

from secretaries_core.plumbing.backoff import Backoff

if TYPE_CHECKING:
    from aiogram import Bot

log = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_GRACE_S = 300.0
BACKOFF_START_S = 0.5
BACKOFF_CAP_S = 10.0


class Undeliverable(Exception):
    """Telegram refuses this send for good; `reason` is the metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def drop_reason(exc: BaseException) -> str | None:
    """The reason to drop a send that failed with `exc`, or None when it may pass."""
    if isinstance(exc, TelegramForbiddenError):
        return "blocked" if "blocked" in str(exc).lower() else "forbidden"
    if isinstance(exc, TelegramBadRequest):
        text = str(exc).lower()
        if "chat not found" in text or "peer_id_invalid" in text:
            return "chat_not_found"
        if "deactivated" in text:
            return "deactivated"
        return "bad_request"
    return None


async def edit_text(bot: Bot, chat: int, message_id: int, text: str) -> None:
    """Edit a message to `text`; one that already shows it ("not modified") is fine."""
    try:
        await bot.edit_message_text(text=text, chat_id=chat, message_id=message_id)
    except TelegramBadRequest as exc:
        if "not modified" not in str(exc):
            raise


def passing(exc: BaseException) -> bool:
    """True for failures that may pass: server errors, network trouble, a wrong route."""
    kinds = (
        TelegramServerError,
        TelegramNetworkError,
        TelegramNotFound,
        TelegramRetryAfter,
        TimeoutError,
        OSError,
    )
    return isinstance(exc, kinds)


_grace = DEFAULT_GRACE_S


def set_grace(seconds: float) -> None:
    """The outage grace of this process's sends (`SECRETARIES_OUTAGE_GRACE`)."""
    global _grace
    _grace = seconds


async def patiently(
    call: Callable[[], Awaitable[T]], *, grace: float | None = None, until: float | None = None
) -> T:
    """`call()` until it succeeds, within `grace` seconds (default: the process's outage
    grace) or until the wall-clock time `until` (epoch seconds) when given (see the
    module's rules)."""
    left = (grace if grace is not None else _grace) if until is None else until - time.time()
    deadline = time.monotonic() + left
    waits = Backoff(BACKOFF_START_S, BACKOFF_CAP_S)
    delay = waits.next()
    while True:
        try:
            return await call()
        except TelegramRetryAfter as exc:
            wait = float(exc.retry_after)
            if time.monotonic() + wait > deadline:
                raise
            log.info("Telegram asks to wait %ss", exc.retry_after)
            await asyncio.sleep(wait)
        except Exception as exc:
            reason = drop_reason(exc)
            if reason is not None:
                raise Undeliverable(reason, str(exc)) from exc
            if not passing(exc) or time.monotonic() + delay > deadline:
                raise
            log.warning("Bot API failed, retrying in %.1fs: %s", delay, exc)
            await asyncio.sleep(delay)
            delay = waits.next()
