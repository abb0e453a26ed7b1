"""The Redis store's lane: one connection per event loop that remembers the contexts it read.

A message reads its user's context and then pushes the turn: two round trips, and on a
2-core machine a round trip through redis-py (and a whole context on the wire) costs more
CPU than the rest of the message. The lane makes the read cheap without trusting anything
but the server's answer:

- it remembers each context it read or pushed, with the SHA-1 of its newest stored item;
- every read is one round trip all the same (`read_if_changed`): the server answers "1"
  when the list still has the remembered length and newest item, else the whole list.
  Any write (by anyone) changes the newest item, since every item carries its own time
  and id; a clear, purge, erase or expiry empties the list. So a read returns every write
  another process completed before it began, whatever the network does to invalidation
  messages: nothing is assumed, it is checked on each read;
- its own pushes go over the same connection and update what it remembers from their
  reply: the list's new length must be the remembered length plus the pushed items
  (trimmed to the cap), or the context is forgotten;
- it also speaks RESP3 with `CLIENT TRACKING ON NOLOOP`: a notice of another client's
  change makes it forget that context at once (the next read then brings the list in the
  same round trip instead of asking twice).

A lost connection forgets everything; the next command connects again (with the same
retries as the store's pool). Redis Cluster keeps the pool: see docs/operations.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from secretaries_core.context.base import Message
from secretaries_core.context.memory import RememberedContexts
from secretaries_core.context.redis_clients import command_retry
from secretaries_core.context.redis_items import decode_items, decode_joined
from secretaries_core.context.redis_scripts import SCRIPTS, push_parts
from secretaries_core.context.resp3 import Arg, Push, RespConnection, Then, connect
from secretaries_core.plumbing.loops import PerLoop

log = logging.getLogger(__name__)

TRACKING = ("CLIENT", "TRACKING", "ON", "NOLOOP")
PASSING = ("LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN")
"""Error replies of a server that will answer soon (a restart loading its data): retried,
not taken as a server without tracking."""


class LaneUnsupported(Exception):
    """The server refused RESP3 or client tracking (Redis < 6, a proxy): use the pool."""


class RedisLane:
    """One loop's tracked RESP3 connection and the contexts it remembers."""

    def __init__(
        self,
        url: str,
        *,
        connect_timeout_s: float,
        timeout_s: float,
        retries: int,
    ) -> None:
        self._url = url
        self._connect_timeout_s = connect_timeout_s
        self._timeout_s = timeout_s
        # The pool's own resend policy (redis-py's Retry), with these many resends.
        self._retry = command_retry(retries)
        self._conn: RespConnection | None = None
        self._opening: asyncio.Future[RespConnection] | None = None
        # Each context with the monotonic time before which its list cannot have expired.
        # Each context with (the monotonic time before which it cannot have expired, the
        # SHA-1 of its newest stored item): what a read checks in its round trip.
        self._memory: RememberedContexts[str, tuple[float, str]] = RememberedContexts()
        self._forgets = 0  # bumped by every forget: a read in flight across one is not kept
        self.hits = 0
        """Reads answered from memory (for tests and benchmarks)."""
        with _LOCK:
            _LANES.setdefault(url, weakref.WeakSet()).add(self)

    # -- the two operations ---------------------------------------------------------------

    async def read(self, key: str, limit: int | None) -> list[Message]:
        """The context's newest `limit` messages (all when None): one round trip that
        answers "unchanged" when the remembered list is still current (its length and its
        newest item), else the list itself."""
        read: list[list[Message]] = []
        sent = time.monotonic()
        forgets = self._forgets
        found = self._memory.entry(key)

        def remember(reply: Any) -> None:
            if not isinstance(reply, list | tuple):
                return  # unchanged: what is remembered is current
            pttl, joined = reply
            messages = decode_joined(joined)
            read.append(messages)
            if self._forgets != forgets:
                # A write on another thread made lanes forget while this read was on its
                # way: the reply may predate that write, so it is used but not kept.
                return
            # -2: no list (an empty context until someone writes); -1: no TTL.
            expires = sent + pttl / 1000 if pttl >= 0 else math.inf
            self._memory.put(key, (expires, _newest_digest(joined)), messages)

        if found is not None:
            (_expires, digest), messages = found
            script = SCRIPTS["read_if_changed"][1]
            await self._call(["EVALSHA", script, 1, key, len(messages), digest], remember)
            if not read:
                self.hits += 1
                return _newest(messages, limit)
            return _newest(read[-1], limit)
        await self._call(["EVALSHA", SCRIPTS["read_all"][1], 1, key], remember)
        return _newest(read[-1], limit)

    async def push(self, keys: Sequence[str], args: Sequence[Arg]) -> int:
        """Run the push script (see redis_scripts) and keep a remembered context in step;
        returns the script's answer: 0 when the turn was stored already, else the length."""
        key = keys[0]
        cap, ttl_ms, bodies = push_parts(args)
        sent = time.monotonic()

        def follow(length: Any) -> None:
            found = self._memory.entry(key)
            if found is None or length == 0:
                return  # not remembered, or the guard found the turn stored: nothing changed
            pushed = decode_items(body.encode() for body in bodies)
            messages = (found[1] + pushed)[-cap:]
            if len(messages) != length:
                self.forget([key])  # not the list we remembered: read it next time
                return
            newest = bodies[-1].encode() if bodies else b""
            self._memory.put(key, (sent + ttl_ms / 1000, _digest(newest)), messages)

        found = await self._call(["EVALSHA", SCRIPTS["push"][1], len(keys), *keys, *args], follow)
        return int(found or 0)

    async def load_scripts(self) -> None:
        """SCRIPT LOAD of every store script over the lane (after a restart lost them)."""
        for body, _sha in SCRIPTS.values():
            await self._call(["SCRIPT", "LOAD", body], None)

    # -- memory ---------------------------------------------------------------------------

    def forget(self, keys: Iterable[str]) -> None:
        """Forget these contexts (safe from any thread: single dict operations)."""
        self._forgets += 1
        for key in keys:
            self._memory.forget(key)

    def forget_all(self) -> None:
        """Forget every context (a write or a flush: reads in flight are not kept either)."""
        self._forgets += 1
        self._memory.clear()

    # -- the connection -------------------------------------------------------------------

    async def _call(self, args: Sequence[Arg], then: Then | None) -> Any:
        """Send one command, connecting first if needed; connection failures are retried
        (every store write is idempotent: see docs/operations.md, "Redis restarts")."""

        async def attempt() -> Any:
            conn = self._conn
            if conn is None or not conn.open:
                conn = await self._connect()
            return await conn.send(args, then)

        return await self._retry.call_with_retry(attempt, _failed)

    async def _connect(self) -> RespConnection:
        """The connection, opened once for all the callers that need it now."""
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._open())
            self._opening.add_done_callback(self._opened)
        return await asyncio.shield(self._opening)

    def _opened(self, opening: asyncio.Future[RespConnection]) -> None:
        if self._opening is opening:
            self._opening = None
        if not opening.cancelled() and opening.exception() is not None:
            # Retrieved here so that a failure nobody awaits any more is still logged once.
            log.debug("opening the Redis lane failed: %s", opening.exception())

    async def _open(self) -> RespConnection:
        try:
            conn = await connect(
                self._url,
                self._notice,
                self._lost,
                connect_timeout_s=self._connect_timeout_s,
                timeout_s=self._timeout_s,
                setup=[TRACKING],
            )
        except ResponseError as exc:
            if str(exc).startswith(PASSING):
                raise RedisConnectionError(f"Redis is not ready: {exc}") from exc
            raise LaneUnsupported(str(exc)) from exc
        self._memory.clear()  # what an older connection read is not tracked by this one
        self._conn = conn
        return conn

    def _notice(self, push: Push) -> None:
        if len(push) >= 2 and push[0] == b"invalidate":
            keys = push[1]
            if keys is None:  # FLUSHALL / FLUSHDB
                self.forget_all()
            else:
                self.forget(k.decode() if isinstance(k, bytes) else str(k) for k in keys)
            return
        # Anything else (e.g. tracking redirection broken) could mean a missed notice.
        log.warning("unexpected push from Redis (%r); forgetting every context", push[:1])
        self.forget_all()

    def _lost(self, conn: RespConnection) -> None:
        # Only the current connection's loss: what a newer one read is tracked by it.
        if self._conn is conn:
            self._conn = None
            self._memory.clear()
            log.info("the Redis lane lost its connection; it reconnects on the next command")

    async def aclose(self) -> None:
        """Close the connection and forget everything."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        self._memory.clear()


# Every lane of the process by URL: a write made in this process (by any store, over any
# connection) makes all of them forget the context at once, without waiting for Redis'
# notice, which travels on another socket and may be read a moment after the write's reply.
_LANES: dict[str, weakref.WeakSet[RedisLane]] = {}
_LOCK = threading.Lock()


def forget_everywhere(
    url: str, keys: Iterable[str] | None, *, but: RedisLane | None = None
) -> None:
    """Every lane on `url` in this process but `but` forgets `keys` (None: everything)."""
    with _LOCK:
        lanes = [lane for lane in _LANES.get(url, ()) if lane is not but]
    if not lanes:
        return
    keys = None if keys is None else list(keys)
    for lane in lanes:
        if keys is None:
            lane.forget_all()
        else:
            lane.forget(keys)


class Lanes:
    """The lanes of one Redis URL for one store: one per event loop, made on first use,
    given up for good (the pool from then on) when the server refuses client tracking.

    Apart from the store on purpose: it holds process-wide state (a lane per loop, the
    registry every write in the process makes forget), the store holds keys and scripts.
    A cluster, or `remember` off, has no lanes: every method is then a no-op.
    """

    def __init__(
        self, url: str | None, *, connect_timeout_s: float, timeout_s: float, retries: int
    ) -> None:
        self.url = url
        self._connect_timeout_s = connect_timeout_s
        self._timeout_s = timeout_s
        self._retries = retries
        self._lanes: PerLoop[RedisLane] | None = PerLoop(self._new) if url is not None else None

    @property
    def on(self) -> bool:
        """True while contexts are read over lanes (not given up, not switched off)."""
        return self._lanes is not None

    def _new(self) -> RedisLane:
        assert self.url is not None
        return RedisLane(
            self.url,
            connect_timeout_s=self._connect_timeout_s,
            timeout_s=self._timeout_s,
            retries=self._retries,
        )

    def current(self) -> RedisLane | None:
        """This loop's lane (made now on its first use), or None without lanes."""
        return self._lanes.get() if self._lanes is not None else None

    def give_up(self, exc: Exception) -> None:
        """The server refused tracking: read through the pool from now on."""
        log.warning("Redis refused client tracking (%s); reading contexts without it", exc)
        self._lanes = None  # writes still make other stores' lanes forget (`self.url`)

    def hits(self) -> int:
        """Context reads the lanes of the open event loops answered from memory."""
        return sum(lane.hits for lane in self._lanes.values()) if self._lanes else 0

    def forget(self, keys: Iterable[str] | None, *, but: RedisLane | None = None) -> None:
        """After a write: no lane of the process on this URL may answer from what it
        remembered of these contexts (None: of any), even before Redis' notice reaches it."""
        if self.url is not None:
            forget_everywhere(self.url, keys, but=but)

    async def aclose(self) -> None:
        """Close the running loop's lane."""
        if self._lanes is not None:
            await self._lanes.aclose_current(_aclose)

    def close(self) -> None:
        """Close every loop's lane (from outside those loops)."""
        if self._lanes is not None:
            self._lanes.close_all(_aclose)


async def _aclose(lane: RedisLane) -> None:
    await lane.aclose()


async def _failed(error: Exception) -> None:
    """Retry's failure hook: the lane has nothing to reset (a lost connection is dropped
    by its own `connection_lost`)."""


def _digest(item: bytes) -> str:
    return hashlib.sha1(item).hexdigest()


def _newest_digest(joined: Any) -> str:
    """The SHA-1 of the newest item of a `read_all` reply (items joined by newlines: JSON
    holds none of its own)."""
    raw = joined if isinstance(joined, bytes) else str(joined or "").encode()
    return _digest(raw[raw.rfind(b"\n") + 1 :])


def _newest(messages: list[Message], limit: int | None) -> list[Message]:
    """A copy of the newest `limit` messages: LRANGE's -limit..-1, so all for None or 0."""
    return messages[-limit:] if limit else messages[:]
