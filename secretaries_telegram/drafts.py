"""Showing the workers' replies while they are written: the live stream → drafts and edits.

A consumer group (`drafters`) on the live stream: each entry goes to one bot process,
which keeps only the newest text of each reply (older ones are coalesced away, never
queued) and shows it — as a draft in a private chat, by editing one message in a group or
forum topic — when the bot's flood control has a slot free at once. The final text is the
sender's (relay.py); the board (board.py) keeps the two apart. Everything here is a
preview: a lost entry, a skipped draft or a restarted bot costs a frame, never the reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from dataclasses import dataclass

from aiogram import Bot
from aiogram.enums import ChatAction
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNotFound,
    TelegramRetryAfter,
)
from redis.exceptions import ResponseError

from secretaries_core.queue.client import UNAVAILABLE, Queue, decode_fields, parse_int
from secretaries_core.queue.live import SUPERSEDED, WRITING
from secretaries_core.redact import scrub
from secretaries_telegram.board import FINAL, Board
from secretaries_telegram.delivery import edit_text
from secretaries_telegram.flood import Throttled, intermediate
from secretaries_telegram.relay import stop_if_cancelled
from secretaries_telegram.split import split_text
from secretaries_telegram.streaming import draft_id_of, drafts_refused

log = logging.getLogger(__name__)
GROUP = "drafters"
IDLE_S = 60.0  # a reply with no news this long is over (its worker died: a retry restarts it)
RETRY_S = 0.3
THINKING_AFTER_S = 1.0  # no text by then: a private chat shows the "Thinking…" draft


@dataclass
class Frame:
    """The newest text of one reply, as the live stream said it."""

    attempt: str
    state: str
    text: str
    thread_id: int | None


@dataclass
class Showing:
    """One reply being shown: its newest frame and what was drawn of it."""

    frame: Frame
    news: asyncio.Event
    drawn: str | None = None


class Drafter:
    """One bot process's reader of the live stream."""

    def __init__(
        self, bot: Bot, queue: Queue, *, drafts: bool = True, interval: float = 1.0
    ) -> None:
        self.bot = bot
        self.queue = queue
        self.board = Board(queue)
        self.drafts = drafts
        self.interval = interval
        self.name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.shown = 0
        self._showing: dict[tuple[int, int], Showing] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Forever: read frames, keep the newest per reply, show them."""
        client, key = self.queue.aclient(), self.queue.keys.live
        await self.queue.create_group(key, GROUP, "$")
        while True:
            try:
                found = await client.xreadgroup(GROUP, self.name, {key: ">"}, count=500, block=1000)
                entries = [e for _stream, rows in found or [] for e in rows]
                if entries:
                    # A preview is worth nothing later: acknowledged as soon as read.
                    await client.xack(key, GROUP, *[e[0] for e in entries])
                for _id, raw in entries:
                    self._take(decode_fields(raw))
            except asyncio.CancelledError:
                raise
            except UNAVAILABLE as exc:
                stop_if_cancelled()
                log.warning("live stream unreachable: %s", exc)
                await asyncio.sleep(1)
            except ResponseError as exc:
                if "NOGROUP" in str(exc):
                    await self.queue.create_group(key, GROUP, "$")
                    continue
                log.error("drafter: %s", scrub(str(exc)))
                await asyncio.sleep(1)
            except Exception as exc:  # the loop must outlive anything one round does
                stop_if_cancelled()
                log.error("drafter round failed", exc_info=exc)
                await asyncio.sleep(1)

    async def aclose(self) -> None:
        """Stop showing; the final texts are the sender's."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _take(self, fields: dict[str, str]) -> None:
        chat = parse_int(fields.get("chat_id", ""))
        update_id = parse_int(fields.get("update_id", ""))
        if chat is None or update_id is None:
            log.warning("live entry without a chat or an update id: %s", sorted(fields))
            return
        frame = Frame(
            fields.get("attempt", ""),
            fields.get("state", WRITING),
            fields.get("text", ""),
            parse_int(fields.get("thread_id", "")),
        )
        showing = self._showing.get((chat, update_id))
        if showing is not None:
            showing.frame = frame  # coalesced: only the newest text is ever drawn
            showing.news.set()
            return
        if frame.state != WRITING:
            return
        showing = Showing(frame, asyncio.Event())
        showing.news.set()
        self._showing[(chat, update_id)] = showing
        task = asyncio.ensure_future(self._show(chat, update_id, showing))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _show(self, chat: int, update_id: int, showing: Showing) -> None:
        try:
            while True:
                try:
                    async with asyncio.timeout(IDLE_S):
                        await showing.news.wait()
                except TimeoutError:
                    return
                showing.news.clear()
                frame = showing.frame
                if frame.state == SUPERSEDED:
                    await self._withdraw(chat, update_id)
                    return
                if frame.state != WRITING:
                    return  # the sender sends the final text
                if frame.text == showing.drawn and frame.text:
                    continue
                if not frame.text and showing.drawn is None and not await _slow(showing):
                    continue  # the first words came quickly: no placeholder before them
                drawn = await self._draw(chat, update_id, frame)
                if drawn is None:
                    return  # final, or the chat is gone
                if drawn:
                    showing.drawn = frame.text
                    await asyncio.sleep(self.interval)
                else:
                    await asyncio.sleep(RETRY_S)
                    showing.news.set()  # try again with whatever is newest then
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one reply's preview never stops the others
            log.warning("preview of update %s in chat %s stopped: %r", update_id, chat, exc)
        finally:
            self._showing.pop((chat, update_id), None)

    async def _draw(self, chat: int, update_id: int, frame: Frame) -> bool | None:
        """True: shown; False: skipped (try later); None: nothing more to show."""
        preview = split_text(frame.text)[0] if frame.text else ""
        if chat > 0 and self.drafts:
            done = await self._as_draft(chat, update_id, frame, preview)
            if done is not False or self.drafts:
                return done
        if not preview:
            with contextlib.suppress(Exception):
                await self.bot.send_chat_action(
                    chat, ChatAction.TYPING, message_thread_id=frame.thread_id
                )
            return True
        return await self._as_edit(chat, update_id, frame, preview)

    async def _as_draft(self, chat: int, update_id: int, frame: Frame, preview: str) -> bool | None:
        async with self.board.held(chat, update_id) as held:
            if not held:
                return False
            if await self.board.state(chat, update_id) == FINAL:
                return None
            try:
                with intermediate():
                    await self.bot.send_message_draft(
                        chat_id=chat,
                        draft_id=draft_id_of(update_id),
                        text=preview,
                        message_thread_id=frame.thread_id,
                    )
            except (Throttled, TelegramRetryAfter):
                return False
            except TelegramForbiddenError:
                return None
            except (TelegramBadRequest, TelegramNotFound) as exc:
                if not drafts_refused(exc):
                    raise
                log.warning("the Bot API refuses drafts (%s); streaming by edits", exc)
                self.drafts = False
                return False
        self.shown += 1
        return True

    async def _as_edit(self, chat: int, update_id: int, frame: Frame, preview: str) -> bool | None:
        async with self.board.held(chat, update_id) as held:
            if not held:
                return False
            state = await self.board.state(chat, update_id)
            if state == FINAL:
                return None
            try:
                with intermediate():
                    if state is None:
                        sent = await self.bot.send_message(
                            chat, preview, message_thread_id=frame.thread_id
                        )
                        await self.board.growing(chat, update_id, sent.message_id)
                    else:
                        await edit_text(self.bot, chat, int(state), preview)
            except (Throttled, TelegramRetryAfter):
                return False
            except TelegramForbiddenError:
                return None
        self.shown += 1
        return True

    async def _withdraw(self, chat: int, update_id: int) -> None:
        """A newer message took over: the message this reply grew in goes away."""
        async with self.board.held(chat, update_id, wait=2.0) as held:
            if not held:
                return
            grown = await self.board.mark_final(chat, update_id)
        if grown is not None:
            with contextlib.suppress(Exception):
                await self.bot.delete_message(chat, grown)


async def _slow(showing: Showing) -> bool:
    """True when no news came within `THINKING_AFTER_S` (news is left set for the loop)."""
    try:
        async with asyncio.timeout(THINKING_AFTER_S):
            await showing.news.wait()
    except TimeoutError:
        return True
    return False
