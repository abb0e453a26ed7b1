"""A reply streamed into one Telegram message: typing while waiting, throttled edits, splits.

Telegram allows about one edit per second per chat before it answers 429; edits here come
at most every `interval` seconds, an intermediate edit refused with `retry_after` is
skipped (the next one carries the text), and the final text is sent with the retries of
delivery.py (wait what Telegram asks, retry 5xx and timeouts, drop what it refuses).
Text goes out without a parse mode, so no character can form a broken
entity: what the model wrote is what the user reads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from aiogram import Bot
from aiogram.enums import ChatAction
from aiogram.exceptions import TelegramBadRequest, TelegramRetryAfter

from secretaries_telegram.delivery import patiently
from secretaries_telegram.split import TELEGRAM_LIMIT, split_text

__all__ = ["StreamedReply", "patiently"]
log = logging.getLogger(__name__)
TYPING_EVERY = 4.0  # Telegram shows "typing…" for about 5 s per action


class StreamedReply:
    """Shows one reply in a chat as it is produced."""

    def __init__(
        self,
        bot: Bot,
        chat_id: int,
        *,
        reply_to: int | None = None,
        interval: float = 1.0,
        thread_id: int | None = None,
    ) -> None:
        self.bot = bot
        self.chat_id = chat_id
        self.reply_to = reply_to
        self.interval = interval
        self.thread_id = thread_id
        self.message_id: int | None = None
        self.shown = ""
        self.edits = 0
        self._next_edit = 0.0

    async def _typing(self) -> None:
        while True:
            try:
                await self.bot.send_chat_action(
                    self.chat_id, ChatAction.TYPING, message_thread_id=self.thread_id
                )
            except TelegramRetryAfter as exc:
                await asyncio.sleep(exc.retry_after)
                continue
            except Exception as exc:  # typing is cosmetic; the reply must still go out
                log.debug("typing action failed: %s", exc)
            await asyncio.sleep(TYPING_EVERY)

    async def _send(self, text: str, *, reply: bool) -> int:
        kwargs: dict[str, Any] = {"message_thread_id": self.thread_id}
        if reply and self.reply_to is not None:
            kwargs["reply_to_message_id"] = self.reply_to
        sent = await patiently(lambda: self.bot.send_message(self.chat_id, text, **kwargs))
        return sent.message_id

    async def _edit(self, text: str) -> None:
        assert self.message_id is not None
        message_id = self.message_id
        try:
            await self.bot.edit_message_text(text=text, chat_id=self.chat_id, message_id=message_id)
        except TelegramBadRequest as exc:
            if "not modified" not in str(exc):
                raise
        self.shown = text
        self.edits += 1

    async def stream(self, pieces: AsyncIterator[str]) -> str:
        """Show `pieces` as they come; returns the whole text, shown complete at the end."""
        typing = asyncio.ensure_future(self._typing())
        text = ""
        try:
            async for piece in pieces:
                text += piece
                if self.message_id is None:
                    typing.cancel()
                    self.shown = split_text(text)[0]
                    self.message_id = await self._send(self.shown, reply=True)
                    self._next_edit = time.monotonic() + self.interval
                elif time.monotonic() >= self._next_edit:
                    await self._progress(split_text(text)[0])
        finally:
            typing.cancel()
        await self.finish(text)
        return text

    async def _progress(self, preview: str) -> None:
        if preview == self.shown:
            return
        try:
            await self._edit(preview)
            self._next_edit = time.monotonic() + self.interval
        except TelegramRetryAfter as exc:
            # Skip this edit; a later one (or the final text) carries what was missed.
            self._next_edit = time.monotonic() + max(exc.retry_after, self.interval)

    async def finish(self, text: str) -> None:
        """The complete text: the first part in the streamed message, the rest after it."""
        parts = split_text(text, TELEGRAM_LIMIT)
        if self.message_id is None:
            self.message_id = await self._send(parts[0], reply=True)
            self.shown = parts[0]
        elif parts[0] != self.shown:
            wait = self._next_edit - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await patiently(lambda: self._edit(parts[0]))
        for part in parts[1:]:
            await self._send(part, reply=False)

    async def fail(self, line: str) -> None:
        """Replace whatever was shown with one line for people (or send it)."""
        if self.message_id is None:
            await self._send(line, reply=True)
        else:
            await patiently(lambda: self._edit(line))
