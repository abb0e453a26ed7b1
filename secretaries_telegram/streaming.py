"""A reply streamed into one chat: a draft in private chats, edits of one message in groups.

Private chats see the reply grow as an animated draft (`sendMessageDraft`, "Thinking…"
while the model has not answered yet) and then get one `sendMessage` of the final text:
no edit storm, nothing half-written left behind when something fails. Groups and forum
topics (the `message_thread_id` is kept) see one message edited as the reply grows. A
Bot API that refuses drafts (an older server) is remembered, and that bot streams by
edits from then on.

Intermediate updates (drafts, streaming edits) go at most every `interval` seconds and
only when the bot's flood control has a slot free at once (flood.py): one it refuses is
skipped, and the next one, or the final text, carries what it would have shown. The final
text waits for its slot and goes with the retries of delivery.py. Text goes out without a
parse mode, so no character can form a broken entity: what the model wrote is what the
user reads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from aiogram import Bot
from aiogram.enums import ChatAction
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramNotFound,
    TelegramRetryAfter,
)

from secretaries_core.conversation.tooling import status_line, with_status
from secretaries_telegram.delivery import Undeliverable, drop_reason, edit_text, patiently
from secretaries_telegram.flood import Throttled, intermediate
from secretaries_telegram.split import TELEGRAM_LIMIT, split_text

__all__ = ["StreamedReply", "draft_id_of", "drafts_refused", "patiently"]
log = logging.getLogger(__name__)
TYPING_EVERY = 4.0  # Telegram shows "typing…" for about 5 s per action
THINKING_AFTER_S = 1.0  # no first piece by then: show the "Thinking…" draft


def skipped(exc: Exception) -> bool:
    """An intermediate update failed: skip it (False), or `Undeliverable` if the chat is gone.

    What it would have shown comes with the next one or the final text, which has the
    retries; a failure here never costs the reply.
    """
    reason = drop_reason(exc)
    if reason is not None:
        raise Undeliverable(reason, str(exc)) from exc
    if not isinstance(exc, Throttled | TelegramRetryAfter):
        log.info("intermediate update skipped: %r", exc)
    return False


def draft_id_of(key: int) -> int:
    """A draft id for the reply to update/message `key` (non-zero, within 31 bits)."""
    return key % 2_000_000_000 + 1


def drafts_refused(exc: BaseException) -> bool:
    """True when the Bot API does not know `sendMessageDraft` (an older server)."""
    if isinstance(exc, TelegramNotFound):
        return True
    text = str(exc).lower()
    return isinstance(exc, TelegramBadRequest) and ("method" in text or "draft" in text)


class StreamedReply:
    """Shows one reply in a chat as it is produced (direct mode)."""

    def __init__(
        self,
        bot: Bot,
        chat_id: int,
        *,
        reply_to: int | None = None,
        interval: float = 1.0,
        thread_id: int | None = None,
        draft_id: int | None = None,
    ) -> None:
        self.bot = bot
        self.chat_id = chat_id
        self.reply_to = reply_to
        self.interval = interval
        self.thread_id = thread_id
        # Drafts only in private chats, and only while the Bot API takes them.
        self.draft_id = draft_id if chat_id > 0 else None
        self.message_id: int | None = None
        self.shown = ""
        self.edits = 0
        self.drafts = 0
        self._next_edit = 0.0
        # The running tool's line, shown under the text so far; one display at a time.
        self.status = ""
        self._text = ""
        self._showing = asyncio.Lock()
        self._shows: set[asyncio.Future[None]] = set()

    def tool_event(self, function: str, state: str) -> None:
        """A tool call started (its name is shown) or ended (called by the message path)."""
        self.status = status_line(function) if state == "started" else ""
        if state == "started":
            shown = asyncio.ensure_future(self._keep_status(self.status))
            self._shows.add(shown)
            shown.add_done_callback(self._shows.discard)

    async def _keep_status(self, status: str) -> None:
        """Show the running tool's line once the chat's flood limits give a slot, unless
        the call ended first."""
        while self.status == status:
            preview = split_text(with_status(self._text, status))[0]
            await self._show(preview)
            if self.shown == preview:
                return
            await asyncio.sleep(max(0.1, self._next_edit - time.monotonic()))

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
        await edit_text(self.bot, self.chat_id, self.message_id, text)
        self.shown = text
        self.edits += 1

    async def _draft(self, text: str) -> bool:
        """Show `text` as the draft (empty: "Thinking…"); False when skipped or refused."""
        assert self.draft_id is not None
        try:
            with intermediate():
                await self.bot.send_message_draft(
                    chat_id=self.chat_id,
                    draft_id=self.draft_id,
                    text=text,
                    message_thread_id=self.thread_id,
                )
        except (TelegramBadRequest, TelegramNotFound) as exc:
            if not drafts_refused(exc):
                raise
            log.warning("the Bot API refuses drafts (%s); streaming by edits", exc)
            self.draft_id = None
            return False
        except Exception as exc:
            return skipped(exc)
        self.shown = text
        self.drafts += 1
        return True

    async def _thinking(self) -> None:
        """ "typing…" at once; a "Thinking…" draft if the model is slow to start.

        Not at once: a draft takes the chat's one send a second, and a model that answers
        quickly should have its first words shown, not wait behind a placeholder.
        """
        if self.draft_id is not None:
            typing = asyncio.ensure_future(self._typing())
            try:
                await asyncio.sleep(THINKING_AFTER_S)
            finally:
                typing.cancel()
            if self.draft_id is not None and not self.shown and await self._draft(""):
                return
        await self._typing()

    async def stream(self, pieces: AsyncIterator[str]) -> str:
        """Show `pieces` as they come; returns the whole text, shown complete at the end."""
        typing: asyncio.Future[None] | None = asyncio.ensure_future(self._thinking())
        text = ""
        try:
            async for piece in pieces:
                if typing is not None and self.draft_id is not None:
                    typing.cancel()
                    typing = None
                text += piece
                self._text = text
                if time.monotonic() < self._next_edit:
                    continue
                await self._show(split_text(with_status(text, self.status))[0])
                if self.message_id is not None and typing is not None and self.draft_id is None:
                    typing.cancel()
                    typing = None
        finally:
            if typing is not None:
                typing.cancel()
            for shown in list(self._shows):
                shown.cancel()
        async with self._showing:
            await self.finish(text)
        return text

    async def _show(self, preview: str) -> None:
        """Show `preview` as the draft, or in the message the reply grows in."""
        async with self._showing:
            if self.draft_id is not None:
                if await self._draft(preview):
                    self._next_edit = time.monotonic() + self.interval
            elif self.message_id is None:
                await self._open(preview)
            else:
                await self._progress(preview)

    async def _open(self, preview: str) -> None:
        """The message the reply grows in (groups, or drafts refused)."""
        kwargs: dict[str, Any] = {"message_thread_id": self.thread_id}
        if self.reply_to is not None:
            kwargs["reply_to_message_id"] = self.reply_to
        try:
            with intermediate():
                sent = await self.bot.send_message(self.chat_id, preview, **kwargs)
        except Exception as exc:
            skipped(exc)
            self._next_edit = time.monotonic() + self.interval / 2
            return
        self.message_id, self.shown = sent.message_id, preview
        self._next_edit = time.monotonic() + self.interval

    async def _progress(self, preview: str) -> None:
        if preview == self.shown:
            return
        try:
            with intermediate():
                await self._edit(preview)
            self._next_edit = time.monotonic() + self.interval
        except Exception as exc:
            # Skip this edit; a later one (or the final text) carries what was missed.
            skipped(exc)
            self._next_edit = time.monotonic() + self.interval / 2

    async def finish(self, text: str) -> None:
        """The complete text: the first part in the streamed message, the rest after it."""
        parts = split_text(text, TELEGRAM_LIMIT)
        if self.message_id is None:
            self.message_id = await self._send(parts[0], reply=True)
            self.shown = parts[0]
        elif parts[0] != self.shown:
            await patiently(lambda: self._edit(parts[0]))
        for part in parts[1:]:
            await self._send(part, reply=False)

    async def fail(self, line: str) -> None:
        """Replace whatever was shown with one line for people (or send it)."""
        if self.message_id is None:
            await self._send(line, reply=True)
        else:
            await patiently(lambda: self._edit(line))
