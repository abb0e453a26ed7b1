"""`Worker`: answers queued updates from Redis Streams, any number of them on any machines.

Ordering: updates are partitioned by user (`telegram_id % partitions`); each partition is
owned by one worker at a time through a lease (`SET NX PX`, renewed by a heartbeat), and a
worker runs one user's updates strictly one after the other (attempts included), while
updates of different users run concurrently (`--concurrency`). When a worker stops
renewing (killed, partitioned away), its leases expire after `lease_seconds` (the
visibility timeout) and another worker takes the partition over: it XAUTOCLAIMs the
entries the dead owner had taken and answers them first, in stream order.

Exactly-once effect: the user's message is stored with the update id in the same write
as the answer, so an update delivered again after a crash is recognised (`answered`) and
only its reply is (re)published; a reply is published once per update id (Lua `SET NX` +
`XADD`). Failures that may pass (model or backend unavailable) are retried with backoff up
to `max_attempts` deliveries in all, then the update goes to the dead-letter stream with
its error and an error reply. Failures that will not pass (quota, bad input, no
secretary) are answered at once with the error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Awaitable
from typing import Any

from secretaries_core.errors import BackendUnavailable, ModelUnavailable, SecretariesError
from secretaries_core.orchestrator import Orchestrator, Reply
from secretaries_core.queue.client import UNAVAILABLE, Queue, Update, decode_fields
from secretaries_core.queue.keys import GROUP

log = logging.getLogger(__name__)

# KEYS: lease. ARGV: owner, ttl ms. Renew only a lease we still hold.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
READ_BLOCK_MS = 1000
READ_COUNT = 50


def _retryable(exc: SecretariesError) -> bool:
    # An unreachable model or store may come back; an internal error may be transient.
    return isinstance(exc, ModelUnavailable | BackendUnavailable) or type(exc) is SecretariesError


class Worker:
    """One worker process's loop over the partitions it owns."""

    def __init__(
        self,
        orchestrator: Orchestrator,
        queue: Queue,
        *,
        concurrency: int = 64,
        lease_seconds: float = 30.0,
        max_attempts: int = 3,
        retry_delay: float = 0.5,
        worker_id: str | None = None,
    ) -> None:
        self.orch = orchestrator
        self.queue = queue
        self.concurrency = concurrency
        self.lease_ms = int(lease_seconds * 1000)
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.owned: dict[int, asyncio.Task[None]] = {}
        self.in_flight: dict[int, set[asyncio.Task[None]]] = {}
        self._last_of_user: dict[int, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(concurrency)
        self._stopping = asyncio.Event()
        self.answered = 0

    # -- lifecycle ------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop taking updates; `run` returns once those in flight are answered."""
        self._stopping.set()

    async def run(self) -> None:
        """Own partitions and answer their updates until `stop()`."""
        await self.queue.ensure_groups()
        log.info("worker %s started (%d partitions)", self.id, self.queue.keys.partitions)
        heartbeat = asyncio.ensure_future(self._heartbeat())
        try:
            await self._stopping.wait()
        finally:
            heartbeat.cancel()
            readers = list(self.owned.values())
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            pending = [t for tasks in self.in_flight.values() for t in tasks]
            if pending:
                log.info("draining %d message(s) in flight", len(pending))
                await asyncio.gather(*pending, return_exceptions=True)
            await self._release_all()
            log.info("worker %s stopped after %d answer(s)", self.id, self.answered)

    async def _release_all(self) -> None:
        client = self.queue.aclient()
        for n in list(self.owned):
            try:
                await client.eval(_RELEASE, 1, self.queue.keys.lease(n), self.id)
            except UNAVAILABLE as exc:
                log.warning("could not release partition %d: %s", n, exc)
        # If it cannot be removed, the heartbeat entry ages out of the live window by itself.
        with contextlib.suppress(*UNAVAILABLE):
            await client.zrem(self.queue.keys.workers, self.id)
        self.owned.clear()

    # -- ownership ------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        every = self.lease_ms / 3000
        while True:
            try:
                await self._balance()
            except UNAVAILABLE as exc:
                log.warning("queue unreachable, keeping what is in flight: %s", exc)
            except Exception as exc:  # never let ownership bookkeeping die silently
                log.error("heartbeat failed", exc_info=exc)
            await asyncio.sleep(every)

    async def _balance(self) -> None:
        keys, client = self.queue.keys, self.queue.aclient()
        now_ms = time.time() * 1000
        await client.zadd(keys.workers, {self.id: now_ms})
        await client.zremrangebyscore(keys.workers, "-inf", now_ms - 3 * self.lease_ms)
        await client.pexpire(keys.workers, 3 * self.lease_ms)
        # Live: a heartbeat within two leases (a slow heartbeat is not a dead worker).
        live = max(1, int(await client.zcount(keys.workers, now_ms - 2 * self.lease_ms, "+inf")))
        share = math.ceil(keys.partitions / live)
        for n in list(self.owned):
            if not await client.eval(_RENEW, 1, keys.lease(n), self.id, self.lease_ms):
                # Another worker may own it now: stop everything of it here (a cancelled
                # answer stores nothing; the new owner answers those entries, in order).
                log.warning(
                    "lost partition %d; cancelling its %d message(s) in flight",
                    n,
                    len(self.in_flight.get(n, ())),
                )
                self.owned.pop(n).cancel()
                for task in list(self.in_flight.get(n, ())):
                    task.cancel()
        # Give back what is above our share, once its messages in flight are answered.
        for n in list(self.owned)[share:]:
            if not self.in_flight.get(n):
                self.owned.pop(n).cancel()
                await client.eval(_RELEASE, 1, keys.lease(n), self.id)
        order = [(hash(self.id) + i) % keys.partitions for i in range(keys.partitions)]
        for n in order:
            if len(self.owned) >= share or self._stopping.is_set():
                break
            if n in self.owned:
                continue
            if await client.set(keys.lease(n), self.id, nx=True, px=self.lease_ms):
                log.info("took partition %d", n)
                self.owned[n] = asyncio.ensure_future(self._read(n))

    # -- reading --------------------------------------------------------------------------

    async def _read(self, n: int) -> None:
        key = self.queue.keys.inbound(n)
        client = self.queue.aclient()
        # First what earlier owners took and never answered (in stream order) ...
        await self._take_over(n)
        last_sweep = time.monotonic()
        while not self._stopping.is_set():
            try:
                found = await client.xreadgroup(
                    GROUP, self.id, {key: ">"}, count=READ_COUNT, block=READ_BLOCK_MS
                )
            except UNAVAILABLE as exc:
                log.warning("partition %d: queue unreachable: %s", n, exc)
                await asyncio.sleep(1)
                continue
            for _stream, entries in found or []:
                for entry_id, fields in entries:
                    await self._start(n, _id(entry_id), decode_fields(fields), redelivered=False)
            # ... and now and then what was left pending and is not being answered here.
            if time.monotonic() - last_sweep > self.lease_ms / 1000:
                await self._sweep(n)
                last_sweep = time.monotonic()

    async def _take_over(self, n: int) -> None:
        """Settle everything pending in `n`, in stream order, before reading anything new.

        Entries another worker took are left to it until idle for a whole lease (it may
        still be answering them after losing the lease); entries this worker took in an
        earlier period of ownership are taken back at once. Only when all of them can be
        claimed are they claimed together and started in stream order: reading new
        entries before could answer a user's later message before an earlier one.
        """
        client, key = self.queue.aclient(), self.queue.keys.inbound(n)
        while not self._stopping.is_set():
            rows = await client.xpending_range(key, GROUP, min="-", max="+", count=10_000)
            busy_here = bool(self.in_flight.get(n))
            # A worker whose heartbeat stopped two leases ago is gone: no need to wait for its
            # entries to age. One that still beats may be finishing them: leave them to it.
            recent = (time.time() * 1000) - 2 * self.lease_ms
            alive = {
                _id(member)
                for member in await client.zrangebyscore(self.queue.keys.workers, recent, "+inf")
            }
            waiting = [
                r
                for r in rows
                if _id(r["consumer"]) != self.id
                and _id(r["consumer"]) in alive
                and int(r["time_since_delivered"]) < self.lease_ms
            ]
            if not waiting and not busy_here:
                if rows:
                    await self._reclaim(n, min_idle_ms=0)
                return
            await asyncio.sleep(0.2)

    async def _sweep(self, n: int) -> None:
        """Claim entries idle for a lease that no task here is answering.

        Entries waiting here behind a user's earlier message are idle too, but claiming
        them would only count a delivery that never happened (and send them to the dead
        letters early), so they are left out.
        """
        client, key = self.queue.aclient(), self.queue.keys.inbound(n)
        here = {getattr(t, "entry_id", None) for t in self.in_flight.get(n, ())}
        rows = await client.xpending_range(
            key, GROUP, min="-", max="+", count=1000, idle=self.lease_ms
        )
        stale = [_id(r["message_id"]) for r in rows if _id(r["message_id"]) not in here]
        if not stale:
            return
        claimed = await client.xclaim(key, GROUP, self.id, self.lease_ms, stale)
        for entry_id, fields in sorted(claimed, key=lambda e: _order(_id(e[0]))):
            if fields:
                await self._start(n, _id(entry_id), decode_fields(fields), redelivered=True)

    async def _reclaim(self, n: int, *, min_idle_ms: int) -> None:
        client, key, start = self.queue.aclient(), self.queue.keys.inbound(n), "0-0"
        while True:
            reply = await client.xautoclaim(key, GROUP, self.id, min_idle_ms, start, count=100)
            start, entries = _id(reply[0]), reply[1]
            for entry_id, fields in entries:
                if fields:
                    await self._start(n, _id(entry_id), decode_fields(fields), redelivered=True)
            if start == "0-0":
                return

    async def _start(
        self, n: int, entry_id: str, fields: dict[str, str], *, redelivered: bool
    ) -> None:
        if any(entry_id == getattr(t, "entry_id", None) for t in self.in_flight.get(n, ())):
            return  # already being answered here
        # Backpressure: stop taking entries while many wait here (a user's later messages
        # wait for their earlier ones without holding one of the `concurrency` slots).
        while sum(len(t) for t in self.in_flight.values()) >= self.concurrency * 4:
            await asyncio.sleep(0.02)
        update = Update.of(fields)
        before = self._last_of_user.get(update.telegram_id)
        task = asyncio.ensure_future(self._answer(n, entry_id, update, before, redelivered))
        task.entry_id = entry_id  # type: ignore[attr-defined]
        self._last_of_user[update.telegram_id] = task
        self.in_flight.setdefault(n, set()).add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self.in_flight[n].discard(finished)
            if self._last_of_user.get(update.telegram_id) is finished:
                del self._last_of_user[update.telegram_id]

        task.add_done_callback(done)

    # -- answering ------------------------------------------------------------------------

    async def _answer(
        self,
        n: int,
        entry_id: str,
        update: Update,
        before: Awaitable[None] | None,
        redelivered: bool,
    ) -> None:
        if before is not None:
            # One user's updates strictly in stream order, retries included.
            await asyncio.gather(before, return_exceptions=True)
        delay = self.retry_delay
        while True:
            try:
                async with self._slots:
                    await self._settle(n, entry_id, update, redelivered)
                return
            except Exception as exc:
                # The queue (or a client) failed around the answer. Try again here rather
                # than leave it to a later sweep: this user's next messages wait behind
                # it, so they cannot overtake it. As a redelivery, so an answer already
                # stored is only published, never made twice.
                log.warning("update %s not settled, retrying: %r", update.update_id, exc)
            if self._stopping.is_set() or n not in self.owned:
                return  # left pending: the next owner settles it, in order
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            redelivered = True

    async def _settle(self, n: int, entry_id: str, update: Update, redelivered: bool) -> None:
        key = str(update.update_id)
        attempts = 0
        if redelivered:
            attempts = await self.queue.deliveries(n, entry_id) - 1
            stored = await self._safely(self.orch.answered(update.telegram_id, key))
            if isinstance(stored, Reply):
                await self._reply(n, entry_id, update, stored, None)
                return
        error: SecretariesError | None = None
        while attempts < self.max_attempts:
            attempts += 1
            try:
                reply = await self.orch.ahandle(
                    update.telegram_id,
                    update.text,
                    username=update.username,
                    idempotency_key=key,
                )
            except SecretariesError as exc:
                error = exc
                if not _retryable(exc):
                    await self._reply(n, entry_id, update, None, exc)
                    return
                log.warning("update %s attempt %d: %s", key, attempts, exc)
                if attempts < self.max_attempts:
                    await asyncio.sleep(self.retry_delay * 2 ** (attempts - 1))
                continue
            await self._reply(n, entry_id, update, reply, None)
            return
        if error is None:
            # Delivered max_attempts times without ever being answered: workers died on it.
            error = SecretariesError(f"delivered {attempts} times without an answer")
        await self.queue.dead_letter(n, entry_id, update, f"{type(error).__name__}: {error}")
        log.error("update %s dead-lettered after %d attempts: %s", key, attempts, error)
        await self._reply(n, entry_id, update, None, error)

    async def _safely(self, call: Awaitable[Any]) -> Any:
        try:
            return await call
        except SecretariesError as exc:
            return exc

    async def _reply(
        self,
        n: int,
        entry_id: str,
        update: Update,
        reply: Reply | None,
        error: SecretariesError | None,
    ) -> None:
        fields = {
            "secretary": reply.secretary if reply else "",
            "text": reply.text if reply else "",
            "error": str(error) if error else "",
            "error_code": type(error).__name__ if error else "",
        }
        await self.queue.publish(update, fields)
        await self.queue.ack(n, entry_id)
        self.answered += 1


def _order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _id(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)
