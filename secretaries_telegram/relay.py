"""Sending the workers' replies: the replies stream → Telegram, once each, in order per chat.

A consumer group (`senders`) on the replies stream: several bot processes share the work,
and an entry is acknowledged only once it was sent or dropped for good (a crash in between
sends it again rather than losing it). Each sender beats in a sorted set; entries pending
under a sender that stopped beating are claimed by a live one, so a crashed or restarted
bot loses no reply.

Chats are served concurrently, each chat's replies in stream order. A reply Telegram
refuses for good (403 blocked, 400 chat not found) is dropped and counted; 5xx, timeouts
and network errors are retried with capped backoff until the reply is `max_age` seconds
old (`SECRETARIES_REPLY_MAX_AGE`, a day by default: an outage of the Bot API or of the
egress loses nothing shorter), then dropped and counted as `expired`; 429 waits what
Telegram asks (delivery.py). Nothing in one chat holds up another, and no failure stops
the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import Bot
from redis.exceptions import ResponseError

from secretaries_core.plumbing.backoff import Backoff
from secretaries_core.plumbing.metrics import Metrics
from secretaries_core.queue import Queue
from secretaries_core.queue.client import UNAVAILABLE, decode_fields, entry_age_s, parse_int
from secretaries_core.queue.leases import alive, beat
from secretaries_core.redact import scrub
from secretaries_telegram import texts
from secretaries_telegram.board import Board
from secretaries_telegram.delivery import Undeliverable, edit_text, passing, patiently
from secretaries_telegram.split import split_text

log = logging.getLogger(__name__)
GROUP = "senders"
HEARTBEAT_S = 2.0
DEAD_AFTER_S = 10.0  # a sender silent this long is gone: its pending replies are taken
READ_COUNT = 100
IN_FLIGHT = 64
DEFAULT_MAX_AGE_S = 86400.0
CLOSE_WAIT_S = 5.0


class Relay:
    """One bot process's sender on the replies stream."""

    def __init__(
        self,
        bot: Bot,
        queue: Queue,
        *,
        metrics: Metrics | None = None,
        max_age: float = DEFAULT_MAX_AGE_S,
        name: str | None = None,
        on_sent: Callable[[dict[str, str], int], Awaitable[None]] | None = None,
    ) -> None:
        self.bot = bot
        self.queue = queue
        self.metrics = metrics or Metrics()
        self.max_age = max_age
        self.on_sent = on_sent
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.sent = 0
        self.dropped = 0
        self._last_of_chat: dict[int, asyncio.Task[None]] = {}
        self._in_flight: set[asyncio.Task[None]] = set()
        self._taken: set[str] = set()
        self.board = Board(queue)

    async def run(self) -> None:
        """Forever: claim what dead senders left, read new replies, send them."""
        client, key = self.queue.aclient(), self.queue.keys.replies
        await self._ensure_group()
        start = "0"  # first what this sender took and did not acknowledge, then new ones
        last_beat = 0.0
        while True:
            try:
                if time.monotonic() - last_beat > HEARTBEAT_S:
                    await self._beat()
                    await self._adopt()
                    last_beat = time.monotonic()
                while len(self._in_flight) >= IN_FLIGHT:
                    await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
                found = await client.xreadgroup(
                    GROUP, self.name, {key: start}, count=READ_COUNT, block=1000
                )
                entries = [e for _stream, rows in found or [] for e in rows]
                if start != ">" and not entries:
                    start = ">"
                    continue
                for raw_id, raw in entries:
                    self._take(_text(raw_id), raw)
            except asyncio.CancelledError:
                raise
            except UNAVAILABLE as exc:
                stop_if_cancelled()
                log.warning("replies stream unreachable: %s", exc)
                await asyncio.sleep(1)
            except ResponseError as exc:
                if "NOGROUP" in str(exc):
                    log.warning("the senders' group is missing (Redis lost it); creating it")
                    await self._ensure_group("0")
                    start = "0"
                    continue
                log.error("sender: %s", scrub(str(exc)))
                await asyncio.sleep(1)
            except Exception as exc:  # the loop must outlive anything one round does
                stop_if_cancelled()
                log.error("sender round failed", exc_info=exc)
                await asyncio.sleep(1)

    async def aclose(self, wait: float = CLOSE_WAIT_S) -> None:
        """Finish the sends in flight for up to `wait` seconds, leave the rest pending (a
        reply waiting out an outage may wait for hours: the next sender takes it), and
        leave the sender set."""
        if self._in_flight:
            _done, waiting = await asyncio.wait(set(self._in_flight), timeout=wait)
            for task in waiting:
                task.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)
        with contextlib.suppress(*UNAVAILABLE):
            await self.queue.aclient().zrem(self.queue.keys.senders, self.name)

    async def _ensure_group(self, start: str = "$") -> None:
        # First start: from new replies on. Recreated after Redis lost it: from the start
        # of what the stream holds now (all of it written after the loss).
        await self.queue.create_group(self.queue.keys.replies, GROUP, start)

    async def _beat(self) -> None:
        keep_ms = 10 * DEAD_AFTER_S * 1000
        await beat(self.queue.aclient(), self.queue.keys.senders, self.name, keep_ms)

    async def _adopt(self) -> None:
        """Claim replies pending under senders that stopped beating; forget those senders."""
        client, key = self.queue.aclient(), self.queue.keys.replies
        living = await alive(client, self.queue.keys.senders, DEAD_AFTER_S * 1000)
        for consumer in await client.xinfo_consumers(key, GROUP):
            name = _text(consumer["name"])
            if name == self.name or name in living or int(consumer["idle"]) < DEAD_AFTER_S * 1000:
                continue
            while True:
                rows = await client.xpending_range(
                    key, GROUP, min="-", max="+", count=500, consumername=name
                )
                if not rows:
                    break
                ids = [_text(r["message_id"]) for r in rows]
                claimed = await client.xclaim(key, GROUP, self.name, 0, ids)
                for raw_id, raw in claimed:
                    self._take(_text(raw_id), raw)
                gone = set(ids) - {_text(r[0]) for r in claimed}
                if gone:  # deleted from the stream meanwhile (trimmed): nothing to send
                    await client.xack(key, GROUP, *gone)
            log.info("took over the replies of sender %s, which stopped", name)
            await client.xgroup_delconsumer(key, GROUP, name)

    def _take(self, entry_id: str, raw: Any) -> None:
        if entry_id in self._taken:
            return  # already being sent here
        fields = decode_fields(raw) if raw else {}
        chat = _chat(fields)
        self._taken.add(entry_id)
        before = self._last_of_chat.get(chat) if chat is not None else None
        task = asyncio.ensure_future(self._deliver(entry_id, fields, chat, before))
        self._in_flight.add(task)
        if chat is not None:
            self._last_of_chat[chat] = task

        def done(finished: asyncio.Task[None]) -> None:
            if not finished.cancelled() and finished.exception() is not None:
                # Retrieved here, or asyncio reports "Task exception was never retrieved".
                log.error("reply %s: sending failed", entry_id, exc_info=finished.exception())
            self._in_flight.discard(finished)
            self._taken.discard(entry_id)
            if chat is not None and self._last_of_chat.get(chat) is finished:
                del self._last_of_chat[chat]

        task.add_done_callback(done)

    async def _deliver(
        self,
        entry_id: str,
        fields: dict[str, str],
        chat: int | None,
        before: asyncio.Task[None] | None,
    ) -> None:
        if before is not None:
            await asyncio.gather(before, return_exceptions=True)  # one chat in stream order
        # Kept and retried until the reply is `max_age` old, counted from when it was made.
        until = time.time() - entry_age_s(entry_id) + self.max_age
        if fields.get("kind") in ("approval", "approval_end") and chat is not None:
            await self._deliver_approval(entry_id, fields, chat, until)
            return
        try:
            if chat is None:
                raise Undeliverable("malformed", f"reply {entry_id} names no chat")
            if fields.get("error"):
                parts = [texts.for_code(fields.get("error_code", ""), fields["error"])]
            else:
                parts = split_text(fields.get("text") or "…")
            thread = parse_int(fields.get("thread_id", ""))
            # No draft or streaming edit after this; a group's reply grew in `grown`.
            update_id = parse_int(fields.get("update_id", ""))
            grown = await self.board.finalise(chat, update_id) if update_id is not None else None
            first: int | None = None
            if grown is not None:
                try:
                    await patiently(lambda: edit_text(self.bot, chat, grown, parts[0]), until=until)
                    first, parts = grown, parts[1:]
                except Undeliverable as exc:
                    if exc.reason != "bad_request":
                        raise
                    # The message it grew in is gone (deleted in the chat): send anew.
                    log.info("reply %s: its streamed message is gone; sending anew", entry_id)
            for part in parts:
                send = self.bot.send_message
                sent = await patiently(
                    lambda: send(chat, part, message_thread_id=thread),  # noqa: B023
                    until=until,
                )
                first = first if first is not None else sent.message_id
            self.sent += 1
            if self.on_sent is not None and first is not None and not fields.get("error"):
                try:
                    await self.on_sent(fields, first)
                except Exception as exc:  # feedback bookkeeping never blocks a reply
                    log.warning("reply %s sent, not remembered: %s", entry_id, exc)
        except Undeliverable as exc:
            self._drop(exc.reason, entry_id, chat, str(exc))
        except asyncio.CancelledError:
            raise  # left pending: this sender (restarted) or another one sends it
        except Exception as exc:
            # Still failing when the reply is too old (or something unexpected): dropped,
            # logged, counted, so one reply never holds up its chat for ever.
            # `patiently` gives up on a failure that may pass only at `until`.
            expired = passing(exc)
            self._drop("expired" if expired else "failed", entry_id, chat, repr(exc))
        await self._ack(entry_id)

    async def _deliver_approval(
        self, entry_id: str, fields: dict[str, str], chat: int, until: float
    ) -> None:
        """An Approve/Deny keyboard for a parked turn, or its message edited once decided
        (the message id kept beside the parked approval, a day)."""
        from secretaries_telegram.approvals import ask_text, keyboard

        found = fields.get("approval", "")
        kept = self.queue.keys.approval(found) + ":msg"
        client = self.queue.aclient()
        try:
            if fields["kind"] == "approval":
                thread = parse_int(fields.get("thread_id", ""))
                sent = await patiently(
                    lambda: self.bot.send_message(
                        chat,
                        ask_text(fields.get("text", "")),
                        reply_markup=keyboard(found),
                        message_thread_id=thread,
                    ),
                    until=until,
                )
                await client.set(kept, str(sent.message_id), ex=24 * 3600)
            else:
                shown = parse_int(_text(await client.get(kept) or b""))
                if shown is not None:
                    await patiently(
                        lambda: self.bot.edit_message_text(
                            fields.get("text", ""), chat_id=chat, message_id=shown
                        ),
                        until=until,
                    )
            self.sent += 1
        except Undeliverable as exc:
            self._drop(exc.reason, entry_id, chat, str(exc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._drop("expired" if passing(exc) else "failed", entry_id, chat, repr(exc))
        await self._ack(entry_id)

    def _drop(self, reason: str, entry_id: str, chat: int | None, detail: str) -> None:
        self.dropped += 1
        self.metrics.telegram_dropped.labels(reason=reason).inc()
        log.warning("reply %s to chat %s dropped (%s): %s", entry_id, chat, reason, scrub(detail))

    async def _ack(self, entry_id: str) -> None:
        waits = Backoff(0.5, 10.0)
        while True:
            try:
                await self.queue.aclient().xack(self.queue.keys.replies, GROUP, entry_id)
                return
            except UNAVAILABLE as exc:
                # Sent but not acknowledged yet: keep trying, or it would be sent twice.
                log.warning("could not acknowledge reply %s, retrying: %s", entry_id, exc)
                await asyncio.sleep(waits.next())


async def relay(
    bot: Bot,
    queue: Queue,
    *,
    metrics: Metrics | None = None,
    on_sent: Callable[[dict[str, str], int], Awaitable[None]] | None = None,
    max_age: float = DEFAULT_MAX_AGE_S,
) -> None:
    """Run a `Relay` for `bot` on `queue` until cancelled."""
    sender = Relay(bot, queue, metrics=metrics, on_sent=on_sent, max_age=max_age)
    try:
        await sender.run()
    finally:
        await sender.aclose()


def stop_if_cancelled() -> None:
    """Raise `CancelledError` when this task was asked to stop.

    A cancel that lands while a client library's own timeout expires can come out as a
    timeout error (asyncio.timeout on 3.11, redis-py's reads): caught as an outage, it
    would keep the loop running after the bot was told to stop (seen once: a bot that
    never exited after SIGTERM, retrying the replies stream for minutes)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _chat(fields: dict[str, str]) -> int | None:
    return parse_int(fields.get("chat_id") or fields.get("telegram_id") or "")


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)
