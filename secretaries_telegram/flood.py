"""One flood control per bot token: Telegram's limits, shared by every process of the bot.

Telegram answers 429 when a bot sends more than about 30 messages a second, more than one
a second to one chat, or more than 20 a minute to one group — edits and drafts included.
Every send (`sendMessage`, `editMessageText`, `sendMessageDraft`, ...) takes a slot first:

- a sliding window per limit (the bot, the chat, the group), kept in Redis sorted sets and
  checked and taken in one Lua call, so every bot process and sender of a token share it
  (`RedisFlood`); without Redis the same windows live in the process (`LocalFlood`);
- a *final* text (what the user must get) waits for its slot; an *intermediate* update (a
  draft, a streaming edit) takes one only if it is free at once, leaves a reserve of the
  bot's rate (and half of a group's minute) to finals, and gives way to a final waiting
  for the same chat. A refused
  intermediate is skipped, never queued: the next one, or the final, carries its text;
- a 429 despite all this (another program on the token) makes every process wait what
  Telegram asked, for that chat.

Each window is padded by a margin, and the bot's sends are evenly paced rather than sent
in bursts: a slot granted here reaches Telegram a little later, and the jitter of a busy
process between two sends must not squeeze them into one window there.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import time
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from secretaries_core.config import Settings
from secretaries_core.plumbing.metrics import Metrics
from secretaries_core.queue.client import UNAVAILABLE

log = logging.getLogger(__name__)

OK, BOT, CHAT, GROUP, HOLD, GIVE_WAY, PACE = range(7)
WINDOW_KEYS = {BOT: "bot", PACE: "pace", CHAT: "chat:{chat}", GROUP: "group:{chat}"}
# An intermediate update is one of these; set by the code that streams (`intermediate()`).
_INTERMEDIATE: contextvars.ContextVar[bool] = contextvars.ContextVar("intermediate", default=False)


class Throttled(Exception):
    """An intermediate update was skipped: sending it now would exceed a limit."""


@contextmanager
def intermediate() -> Iterator[None]:
    """Sends inside this block are intermediate: skipped (`Throttled`) rather than waited."""
    token = _INTERMEDIATE.set(True)
    try:
        yield
    finally:
        _INTERMEDIATE.reset(token)


def is_intermediate() -> bool:
    """True inside `intermediate()`."""
    return _INTERMEDIATE.get()


@dataclass(frozen=True)
class FloodLimits:
    """Telegram's limits and the margins kept below them."""

    bot_per_second: int = 30
    chat_per_second: int = 1
    group_per_minute: int = 20
    # Of the bot's rate, this many slots a second are for final texts only.
    final_reserve: int = 5
    bot_margin_s: float = 0.1
    chat_margin_s: float = 0.25
    group_margin_s: float = 1.0

    @classmethod
    def from_settings(cls, settings: Settings) -> FloodLimits:
        """The limits of `SECRETARIES_TELEGRAM_*`."""
        bot = settings.telegram_bot_per_second
        return cls(
            bot_per_second=bot,
            chat_per_second=settings.telegram_chat_per_second,
            group_per_minute=settings.telegram_group_per_minute,
            final_reserve=max(0, min(bot - 1, bot // 6)),
        )

    def windows(self, group: bool, kind_intermediate: bool) -> list[tuple[int, int, int]]:
        """(cause, limit, window in ms) of every window a send must fit in."""
        bot = self.bot_per_second - (self.final_reserve if kind_intermediate else 0)
        found = [
            (BOT, max(1, bot), int((1 + self.bot_margin_s) * 1000)),
            # Evenly spaced, not in bursts of 30: a burst reaches Telegram spread by the
            # network, and its stragglers would share a window with the next burst.
            (PACE, 1, max(1, int(1000 / self.bot_per_second))),
            (CHAT, self.chat_per_second, int((1 + self.chat_margin_s) * 1000)),
        ]
        if group:
            # Half of a group's minute is for final texts: streaming edits of one busy
            # minute must not make the replies themselves wait for the next one.
            per_minute = self.group_per_minute
            if kind_intermediate:
                per_minute = max(1, per_minute - per_minute // 2)
            found.append((GROUP, per_minute, int((60 + self.group_margin_s) * 1000)))
        return found


class FloodControl:
    """Takes send slots; subclasses keep the windows (`_try`)."""

    def __init__(self, limits: FloodLimits, metrics: Metrics | None = None) -> None:
        self.limits = limits
        self.metrics = metrics or Metrics()
        self._bot_line = asyncio.Lock()

    async def _try(self, chat: int, group: bool, intermediate: bool) -> tuple[int, float]:
        """(OK, 0) with the slot taken, else (cause, seconds until it may be free)."""
        raise NotImplementedError

    async def hold(self, chat: int, seconds: float) -> None:
        """Telegram asked to wait `seconds` before the next send to `chat`."""
        raise NotImplementedError

    async def take_intermediate(self, chat: int) -> bool:
        """A slot for a draft or streaming edit now, or False (skip it)."""
        cause, _ = await self._try(chat, chat < 0, True)
        if cause != OK:
            self.metrics.flood_skipped.inc()
            return False
        self.metrics.flood_wait.labels(kind="intermediate").observe(0.0)
        return True

    async def take_final(self, chat: int) -> float:
        """Wait for a slot for a final text to `chat`; returns the seconds waited.

        Waiting on the bot's rate, one send of this process at a time asks Redis (the
        others wait their turn here): a thousand finals do not poll it a thousand times.
        """
        started = time.monotonic()
        self.metrics.flood_waiting.inc()
        try:
            while True:
                cause, wait = await self._try(chat, chat < 0, False)
                if cause == OK:
                    break
                if cause not in (BOT, PACE):
                    await asyncio.sleep(wait + random.uniform(0, 0.02))
                    continue
                async with self._bot_line:
                    while cause in (BOT, PACE):
                        await asyncio.sleep(wait)
                        cause, wait = await self._try(chat, chat < 0, False)
                if cause == OK:
                    break
        finally:
            self.metrics.flood_waiting.dec()
        waited = time.monotonic() - started
        self.metrics.flood_wait.labels(kind="final").observe(waited)
        return waited


class LocalFlood(FloodControl):
    """The windows in this process (direct mode without Redis, or while Redis is away)."""

    def __init__(self, limits: FloodLimits, metrics: Metrics | None = None) -> None:
        super().__init__(limits, metrics)
        self._sent: dict[tuple[int, int], deque[float]] = {}
        self._holds: dict[int, float] = {}
        self._finals: dict[int, float] = {}

    async def _try(self, chat: int, group: bool, intermediate: bool) -> tuple[int, float]:
        now = time.monotonic()
        wait, cause = self._holds.get(chat, 0.0) - now, HOLD
        if intermediate and self._finals.get(chat, 0.0) > now:
            return GIVE_WAY, 0.0
        for which, limit, span_ms in self.limits.windows(group, intermediate):
            times = self._window(which, chat, span_ms, now)
            if len(times) >= limit:
                free = times[len(times) - limit] + span_ms / 1000 - now
                if free > wait:
                    wait, cause = free, which
        if wait > 0:
            if intermediate:
                return cause, wait
            self._finals[chat] = now + 5.0
            return cause, wait
        self._take(chat, group, intermediate, now)
        if not intermediate:
            self._finals.pop(chat, None)
        return OK, 0.0

    def note(self, chat: int, group: bool, intermediate: bool) -> None:
        """Count a send granted elsewhere (by Redis) in these windows too: should Redis
        go away, this process goes on from what it really sent, not from empty windows
        (which would let a whole window's burst through on top of it)."""
        self._take(chat, group, intermediate, time.monotonic())

    def _window(self, which: int, chat: int, span_ms: int, now: float) -> deque[float]:
        """One window's send times, those older than the window dropped."""
        times = self._sent.setdefault((which, 0 if which in (BOT, PACE) else chat), deque())
        while times and times[0] <= now - span_ms / 1000:
            times.popleft()
        return times

    def _take(self, chat: int, group: bool, intermediate: bool, now: float) -> None:
        """A send at `now` in every window it counts in."""
        for which, _limit, span_ms in self.limits.windows(group, intermediate):
            self._window(which, chat, span_ms, now).append(now)
        if len(self._sent) > 10_000:
            self._forget(now)

    def _forget(self, now: float) -> None:
        # Chats that sent nothing for a minute and more: nothing of theirs is in a window.
        for key in [k for k, v in self._sent.items() if not v or v[-1] < now - 62]:
            del self._sent[key]

    async def hold(self, chat: int, seconds: float) -> None:
        """See `FloodControl.hold`."""
        self._holds[chat] = max(self._holds.get(chat, 0.0), time.monotonic() + seconds)


# KEYS: 1 "a final waits for this chat", 2 the chat's hold (429), 3.. the windows.
# ARGV: 1 member, 2 intermediate (0/1), 3 how long a final marks the chat (ms), 4.. (cause,
# limit, window ms) per window. Returns {cause, ms to wait}. TIME is Redis's clock: one
# clock for every process of the bot.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local intermediate = ARGV[2] == '1'
local wait, cause = redis.call('PTTL', KEYS[2]), 4
if intermediate and redis.call('EXISTS', KEYS[1]) == 1 then return {5, 0} end
for i = 3, #KEYS do
  local a = 4 + (i - 3) * 3
  local limit, span = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - span)
  local n = redis.call('ZCARD', KEYS[i])
  if n >= limit then
    local first = redis.call('ZRANGE', KEYS[i], n - limit, n - limit, 'WITHSCORES')
    local free = tonumber(first[2]) + span - now
    if free > wait then wait, cause = free, tonumber(ARGV[a]) end
  end
end
if wait > 0 then
  if not intermediate then redis.call('SET', KEYS[1], '1', 'PX', ARGV[3]) end
  return {cause, wait}
end
for i = 3, #KEYS do
  redis.call('ZADD', KEYS[i], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[i], ARGV[4 + (i - 3) * 3 + 2])
end
if not intermediate then redis.call('DEL', KEYS[1]) end
return {0, 0}
"""


class RedisFlood(FloodControl):
    """The windows in Redis, shared by every process of the bot `bot_id`.

    While Redis cannot be reached, the process keeps to the limits alone (`LocalFlood`)
    rather than stop sending: an outage of Redis must not silence the bot.
    """

    def __init__(
        self,
        client: Any,
        prefix: str,
        limits: FloodLimits,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__(limits, metrics)
        self.client = client
        self.prefix = prefix
        self.fallback = LocalFlood(limits, self.metrics)
        self._warned = False

    async def _try(self, chat: int, group: bool, intermediate: bool) -> tuple[int, float]:
        p = self.prefix
        keys, args = (
            [f"{p}final:{chat}", f"{p}hold:{chat}"],
            [uuid.uuid4().hex, int(intermediate), 5000],
        )
        for which, limit, span in self.limits.windows(group, intermediate):
            keys.append(p + WINDOW_KEYS[which].format(chat=chat))
            args += [which, limit, span]
        try:
            cause, wait_ms = await self.client.eval(_TAKE, len(keys), *keys, *args)
        except (*UNAVAILABLE, RedisError) as exc:
            # Unreachable, or refusing (a replica mid-failover, out of memory): the process
            # keeps to the limits alone rather than fail the send.
            if not self._warned:
                self._warned = True
                log.warning("flood control: Redis unusable, this process alone: %r", exc)
            return await self.fallback._try(chat, group, intermediate)
        self._warned = False
        if int(cause) == OK:
            self.fallback.note(chat, group, intermediate)
        return int(cause), int(wait_ms) / 1000

    async def hold(self, chat: int, seconds: float) -> None:
        """See `FloodControl.hold`."""
        await self.fallback.hold(chat, seconds)
        try:
            await self.client.set(f"{self.prefix}hold:{chat}", "1", px=max(1, int(seconds * 1000)))
        except (*UNAVAILABLE, RedisError) as exc:
            log.warning("flood control: the hold of chat %s is local only: %s", chat, exc)
