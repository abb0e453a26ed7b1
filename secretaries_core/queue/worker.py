"""`Worker`: answers queued updates from Redis Streams, any number of them on any machines.

Ordering: updates are partitioned by user (`telegram_id % partitions`); each partition is
owned by one worker at a time through a lease (`SET NX PX`, renewed by a heartbeat:
ownership.py), and a
worker runs one user's updates strictly one after the other (attempts included), while
updates of different users run concurrently (`--concurrency`). When a worker stops
renewing (killed, partitioned away), its leases expire after `lease_seconds` (the
visibility timeout) and another worker takes the partition over: it claims the entries the
dead owner had taken and answers them first, in stream order.

Exactly-once effect: the user's message is stored with the update id in the same write
as the answer, and the store writes a turn once per update id; before the model is asked,
the stored context is checked for that id, so an update delivered again is only (re)
published; a reply is published once per (user, update id) (Lua `SET NX` + `XADD`).

Failures are classified in answering.py.

Supervision: each partition's reader restarts itself after any failure (logged); a lease
is renewed only while its reader runs; a missing consumer group (Redis restarted without
its data) is created again; a worker that cannot reach the queue for longer than the
outage grace exits with an error so its supervisor restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from typing import Any

from redis.exceptions import ResponseError

from secretaries_core.conversation.ordering import Policy
from secretaries_core.errors import SecretariesError
from secretaries_core.orchestrator import Orchestrator
from secretaries_core.plumbing.backoff import Backoff
from secretaries_core.queue.answering import BACKOFF_CAP_S, Answerer
from secretaries_core.queue.client import (
    UNAVAILABLE,
    MalformedEntry,
    Queue,
    Update,
    decode_fields,
)
from secretaries_core.queue.keys import GROUP
from secretaries_core.queue.leases import alive
from secretaries_core.queue.ownership import Ownership
from secretaries_core.redact import scrub

log = logging.getLogger(__name__)
STOP_WAIT_S = 10.0  # how long a stopping worker waits for its readers and heartbeat
APPROVAL_SWEEP_S = 1.0  # how often a worker looks for parked approvals whose time is up

READ_BLOCK_MS = 1000
READ_COUNT = 50


class WorkerFailed(SecretariesError):
    """The worker cannot go on (its queue unreachable past the grace, a task died)."""


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
        outage_grace: float = 300.0,
        worker_id: str | None = None,
        live_interval: float | None = 0.25,
    ) -> None:
        self.orch = orchestrator
        self.queue = queue
        self.concurrency = concurrency
        self.lease_ms = int(lease_seconds * 1000)
        self.retry_delay = retry_delay
        self.outage_grace = outage_grace
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.in_flight: dict[int, set[asyncio.Task[None]]] = {}
        self._last_of_user: dict[int, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(concurrency)
        self._stopping = asyncio.Event()
        self._queue_ok = time.monotonic()
        self.ownership = Ownership(
            queue,
            self.id,
            self.lease_ms,
            start_reader=lambda n: asyncio.ensure_future(self._supervise(n)),
            in_flight=lambda n: self.in_flight.get(n, set()),
            stopping=self._stopping,
        )
        self.answerer = Answerer(
            orchestrator,
            queue,
            self._stopping,
            max_attempts=max_attempts,
            retry_delay=retry_delay,
            outage_grace=outage_grace,
            live_interval=live_interval,
        )

    @property
    def owned(self) -> dict[int, asyncio.Task[None]]:
        """The partitions this worker owns now, with their readers."""
        return self.ownership.owned

    @property
    def answered(self) -> int:
        """Updates answered (or answered with an error) by this worker."""
        return self.answerer.answered

    # -- lifecycle ------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop taking updates; `run` returns once those in flight are answered."""
        self._stopping.set()

    async def run(self) -> None:
        """Own partitions and answer their updates until `stop()`; `WorkerFailed` if stuck."""
        await self._start_up()
        log.info("worker %s started (%d partitions)", self.id, self.queue.keys.partitions)
        heartbeat = asyncio.ensure_future(self._heartbeat())
        approvals = asyncio.ensure_future(self._approvals())
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({heartbeat, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            approvals.cancel()
            failed = heartbeat.done() and not heartbeat.cancelled() and heartbeat.exception()
            heartbeat.cancel()
            readers = list(self.owned.values())
            for reader in readers:
                reader.cancel()
            # Bounded: a task that swallowed its cancellation (a client library may, in the
            # middle of a blocking read) must not keep the process from stopping.
            _done, stuck = await asyncio.wait({*readers, heartbeat}, timeout=STOP_WAIT_S)
            if stuck:
                log.warning("%d task(s) did not stop within %gs", len(stuck), STOP_WAIT_S)
            pending = [t for tasks in self.in_flight.values() for t in tasks]
            if pending and not failed:
                log.info("draining %d message(s) in flight", len(pending))
                await asyncio.gather(*pending, return_exceptions=True)
            for task in pending:
                task.cancel()
            await self.ownership.release_all()
            log.info("worker %s stopped after %d answer(s)", self.id, self.answered)
        if failed:
            raise WorkerFailed(f"worker {self.id} stopped: {failed}") from failed

    async def _start_up(self) -> None:
        """Create the consumer groups and say once if the queue's Redis does not persist."""
        deadline = time.monotonic() + self.outage_grace
        while True:
            try:
                await self.queue.acheck_partitions()  # Conflict: another count is recorded
                await self.queue.ensure_groups()
                if not await self.queue.apersistence():
                    log.warning(
                        "the queue's Redis %s keeps nothing on disk: a restart loses every "
                        "queued update. Turn on AOF (appendonly yes, appendfsync everysec); "
                        "see docs/operations.md",
                        self.queue.masked,
                    )
                return
            except UNAVAILABLE as exc:
                if time.monotonic() > deadline:
                    raise WorkerFailed(f"cannot reach the queue {self.queue.masked}") from exc
                log.warning("queue %s unreachable at start, waiting: %s", self.queue.masked, exc)
                await asyncio.sleep(1)

    # -- supervision ----------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        every = self.lease_ms / 3000
        while not self._stopping.is_set():
            try:
                await self.ownership.balance()
                self._queue_ok = time.monotonic()
            except UNAVAILABLE as exc:
                down = time.monotonic() - self._queue_ok
                if down > self.outage_grace:
                    raise WorkerFailed(
                        f"the queue {self.queue.masked} was unreachable for {down:.0f}s"
                    ) from exc
                log.warning("queue unreachable, keeping what is in flight: %s", exc)
            except WorkerFailed:
                raise
            except Exception as exc:  # never let ownership bookkeeping die silently
                log.error("heartbeat failed", exc_info=exc)
            with contextlib.suppress(TimeoutError):  # the next beat, or the stop, first
                await asyncio.wait_for(self._stopping.wait(), every)

    async def _approvals(self) -> None:
        """Every second: decline and resume the parked approvals whose time is up."""
        from secretaries_core.queue.approvals import sweep_timeouts

        while not self._stopping.is_set():
            try:
                timed_out = await sweep_timeouts(self.queue, self.orch.store)
                if timed_out:
                    log.info("%d approval(s) timed out: declined", timed_out)
            except Exception as exc:  # the queue or the store away: the next sweep retries
                log.warning("approval timeouts not swept: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), APPROVAL_SWEEP_S)

    # -- reading --------------------------------------------------------------------------

    async def _supervise(self, n: int) -> None:
        """Run partition `n`'s reader; after any failure log it and start it again."""
        waits = Backoff(0.2, 5.0)
        while not self._stopping.is_set():
            try:
                await self._read(n)
                return
            except asyncio.CancelledError:
                raise
            except ResponseError as exc:
                if "NOGROUP" in str(exc):
                    # Redis lost the group (restarted without its data): make it again.
                    log.warning("partition %d: consumer group missing; creating it", n)
                    with contextlib.suppress(*UNAVAILABLE, ResponseError):
                        await self.queue.ensure_group(n)
                    continue
                log.error("partition %d: reader failed, restarting: %s", n, scrub(str(exc)))
            except UNAVAILABLE as exc:
                log.warning("partition %d: queue unreachable, retrying: %s", n, exc)
            except Exception as exc:
                log.error("partition %d: reader failed, restarting", n, exc_info=exc)
            await asyncio.sleep(waits.next())

    async def _read(self, n: int) -> None:
        key = self.queue.keys.inbound(n)
        client = self.queue.aclient()
        # First what earlier owners took and never answered (in stream order) ...
        await self._take_over(n)
        last_sweep = time.monotonic()
        while not self._stopping.is_set():
            if not self.ownership.holds(n):
                # The heartbeat could not renew the lease lately (Redis down, a slow
                # loop): read nothing new that another owner may be reading.
                await asyncio.sleep(0.2)
                continue
            found = await client.xreadgroup(
                GROUP, self.id, {key: ">"}, count=READ_COUNT, block=READ_BLOCK_MS
            )
            for _stream, entries in found or []:
                for entry_id, fields in entries:
                    await self._start(n, _id(entry_id), fields, redelivered=False)
            # ... and now and then what was left pending and is not being answered.
            if time.monotonic() - last_sweep > self.lease_ms / 1000:
                await self._sweep(n)
                last_sweep = time.monotonic()

    async def _alive(self) -> set[str]:
        """Workers whose heartbeat is within two leases."""
        return await alive(self.queue.aclient(), self.queue.keys.workers, 2 * self.lease_ms)

    async def _take_over(self, n: int) -> None:
        """Settle everything pending in `n`, in stream order, before reading anything new.

        Entries another live worker took are left to it until idle for a whole lease (it
        may still be answering them after losing the lease); entries of a dead worker or of
        this one are taken at once. Only when all of them can be claimed are they claimed
        together and started in stream order: reading new entries before could answer a
        user's later message before an earlier one.
        """
        client, key = self.queue.aclient(), self.queue.keys.inbound(n)
        started, warned = time.monotonic(), False
        while not self._stopping.is_set():
            rows = await client.xpending_range(key, GROUP, min="-", max="+", count=10_000)
            busy_here = bool(self.in_flight.get(n))
            alive = await self._alive()
            waiting = [
                r
                for r in rows
                if _id(r["consumer"]) != self.id
                and _id(r["consumer"]) in alive
                and int(r["time_since_delivered"]) < self.lease_ms
            ]
            if not waiting and not busy_here:
                if rows:
                    await self._reclaim(n)
                return
            if not warned and time.monotonic() - started > 3 * self.lease_ms / 1000:
                # Visible, never silent: what this partition has been waiting for.
                warned = True
                log.warning(
                    "partition %d: still waiting to take over %d entr(ies) of %s "
                    "(%d answer(s) of ours in flight)",
                    n,
                    len(waiting),
                    sorted({_id(r["consumer"]) for r in waiting}),
                    len(self.in_flight.get(n, ())),
                )
            await asyncio.sleep(0.2)

    async def _sweep(self, n: int) -> None:
        """Claim entries that nobody is answering: a dead worker's, or ours not in flight.

        A live worker's entries stay its own however long they take: a slow answer is not
        a failed one, and claiming it would only count a delivery that never failed.
        """
        client, key = self.queue.aclient(), self.queue.keys.inbound(n)
        here = {getattr(t, "entry_id", None) for t in self.in_flight.get(n, ())}
        rows = await client.xpending_range(
            key, GROUP, min="-", max="+", count=1000, idle=self.lease_ms
        )
        if not rows:
            return
        alive = await self._alive()
        stale = [
            _id(r["message_id"])
            for r in rows
            if _id(r["message_id"]) not in here
            and (_id(r["consumer"]) == self.id or _id(r["consumer"]) not in alive)
        ]
        if not stale:
            return
        claimed = await client.xclaim(key, GROUP, self.id, self.lease_ms, stale)
        for entry_id, fields in sorted(claimed, key=lambda e: _order(_id(e[0]))):
            await self._start(n, _id(entry_id), fields, redelivered=True)

    async def _reclaim(self, n: int) -> None:
        client, key, start = self.queue.aclient(), self.queue.keys.inbound(n), "0-0"
        while True:
            reply = await client.xautoclaim(key, GROUP, self.id, 0, start, count=100)
            start, entries = _id(reply[0]), reply[1]
            for entry_id, fields in entries:
                await self._start(n, _id(entry_id), fields, redelivered=True)
            # Entries deleted while pending come back as ids only (Redis >= 7): ack them.
            for gone in reply[2] if len(reply) > 2 else ():
                await self.queue.ack(n, _id(gone))
            if start == "0-0":
                return

    async def _start(self, n: int, entry_id: str, raw: Any, *, redelivered: bool) -> None:
        if any(entry_id == getattr(t, "entry_id", None) for t in self.in_flight.get(n, ())):
            return  # already being answered here
        if not raw:
            await self.queue.ack(n, entry_id)  # deleted while pending: nothing to answer
            return
        fields = decode_fields(raw)
        try:
            update = Update.of(fields)
        except MalformedEntry as exc:
            await self.answerer.bury(n, entry_id, fields, f"MalformedEntry: {exc}")
            return
        # Backpressure: stop taking entries while many wait here (a user's later messages
        # wait for their earlier ones without holding one of the `concurrency` slots).
        waited = time.monotonic()
        while sum(len(t) for t in self.in_flight.values()) >= self.concurrency * 4:
            if time.monotonic() - waited > 60:
                log.warning("partition %d: %d answers in flight for 60s", n, self.concurrency * 4)
                waited = time.monotonic()
            await asyncio.sleep(0.02)
        before = self._last_of_user.get(update.telegram_id)
        policy = await self._policy(update.telegram_id) if before is not None else "enqueue"
        entered = asyncio.Event()
        task = asyncio.ensure_future(
            self._answer(n, entry_id, update, before, redelivered, policy, entered)
        )
        task.entry_id = entry_id  # type: ignore[attr-defined]
        task.entered = entered  # type: ignore[attr-defined]
        self._last_of_user[update.telegram_id] = task
        self.in_flight.setdefault(n, set()).add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self.in_flight[n].discard(finished)
            if self._last_of_user.get(update.telegram_id) is finished:
                del self._last_of_user[update.telegram_id]
            if not finished.cancelled() and finished.exception() is not None:
                log.error(
                    "update %s: answer task failed",
                    update.update_id,
                    exc_info=finished.exception(),
                )

        task.add_done_callback(done)

    # -- answering ------------------------------------------------------------------------

    async def _policy(self, telegram_id: int) -> Policy:
        """The user's double-texting policy; `enqueue` when it cannot be told now."""
        try:
            return await self.orch.double_texting(telegram_id)
        except SecretariesError as exc:
            log.debug("policy of user %s unknown, enqueueing: %s", telegram_id, exc)
            return "enqueue"

    async def _answer(
        self,
        n: int,
        entry_id: str,
        update: Update,
        before: asyncio.Task[None] | None,
        redelivered: bool,
        policy: Policy,
        entered: asyncio.Event,
    ) -> None:
        if before is not None and policy == "enqueue":
            # One user's updates strictly in stream order, retries included.
            await asyncio.gather(before, return_exceptions=True)
        elif before is not None:
            # `reject` / `interrupt`: this message must meet the previous one in the user's
            # line while it is answered (every message of a user comes to the one worker
            # owning its partition), so it only waits until that one has taken its place.
            await _first(before, getattr(before, "entered", None))
        waits = Backoff(self.retry_delay, BACKOFF_CAP_S)
        while True:
            try:
                async with self._slots:
                    await self.answerer.settle(n, entry_id, update, redelivered, entered)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The queue (or a client) failed around the answer. Try again here rather
                # than leave it to a later sweep: this user's next messages wait behind
                # it, so they cannot overtake it. The stored turn is found by its update
                # id, so an answer already stored is only published, never made twice.
                log.warning(
                    "update %s not settled, retrying: %s", update.update_id, scrub(repr(exc))
                )
            if self._stopping.is_set() or n not in self.owned:
                return  # left pending: the next owner settles it, in order
            await asyncio.sleep(waits.next())
            redelivered = True


async def _first(task: asyncio.Task[None], entered: asyncio.Event | None) -> None:
    """Until `task` is done or has `entered` its user's line, whichever comes first."""
    if entered is None:
        await asyncio.gather(task, return_exceptions=True)
        return
    waiting = asyncio.ensure_future(entered.wait())
    try:
        await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()


def _order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _id(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)
