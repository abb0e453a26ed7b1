"""`Ownership`: which partitions one worker owns, through leases renewed by its heartbeat.

Each partition is owned by one worker at a time (`SET NX PX` on its lease). Every
lease/3 the heartbeat records the worker as live, renews its leases, gives back what is
above its fair share (the partitions over the live workers) once that partition's answers
in flight are done, and takes free partitions up to its share. A lease it cannot renew is
lost: that partition's reader and answers in flight are cancelled here (a cancelled
answer stores nothing; the new owner answers those entries, in order).

The worker (worker.py) reads and answers; this module only decides what it may read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable

from secretaries_core.queue.client import UNAVAILABLE, Queue
from secretaries_core.queue.leases import beat, release, renew

log = logging.getLogger(__name__)

StartReader = Callable[[int], "asyncio.Task[None]"]
InFlight = Callable[[int], "set[asyncio.Task[None]]"]


class Ownership:
    """The partitions one worker owns, and the heartbeat that keeps them."""

    def __init__(
        self,
        queue: Queue,
        worker_id: str,
        lease_ms: int,
        *,
        start_reader: StartReader,
        in_flight: InFlight,
        stopping: asyncio.Event,
    ) -> None:
        self.queue = queue
        self.worker_id = worker_id
        self.lease_ms = lease_ms
        self.owned: dict[int, asyncio.Task[None]] = {}
        self._renewed: dict[int, float] = {}
        self._start_reader = start_reader
        self._in_flight = in_flight
        self._stopping = stopping

    def holds(self, n: int) -> bool:
        """True while the lease of `n` was renewed within the lease time (so still ours)."""
        renewed = self._renewed.get(n)
        return renewed is not None and time.monotonic() - renewed < self.lease_ms / 1000 * 0.9

    async def balance(self) -> None:
        """One heartbeat: be live, renew, give back above the share, take up to it."""
        keys, client = self.queue.keys, self.queue.aclient()
        now_ms = await beat(client, keys.workers, self.worker_id, 3 * self.lease_ms)
        # Live: a heartbeat within two leases (a slow heartbeat is not a dead worker).
        live = max(1, int(await client.zcount(keys.workers, now_ms - 2 * self.lease_ms, "+inf")))
        share = math.ceil(keys.partitions / live)
        for n in list(self.owned):
            if self.owned[n].done():
                # Its reader ended (it never should): no lease without a live reader.
                log.error("partition %d: its reader stopped; giving the partition up", n)
                self.lose(n)
                await release(client, keys.lease(n), self.worker_id)
            elif await renew(client, keys.lease(n), self.worker_id, self.lease_ms):
                self._renewed[n] = time.monotonic()
            else:
                self.lose(n)
        # Give back what is above our share, once its messages in flight are answered.
        for n in list(self.owned)[share:]:
            if not self._in_flight(n):
                self.owned.pop(n).cancel()
                self._renewed.pop(n, None)
                await release(client, keys.lease(n), self.worker_id)
        order = [(hash(self.worker_id) + i) % keys.partitions for i in range(keys.partitions)]
        for n in order:
            if len(self.owned) >= share or self._stopping.is_set():
                break
            if n in self.owned:
                continue
            if await client.set(keys.lease(n), self.worker_id, nx=True, px=self.lease_ms):
                log.info("took partition %d", n)
                self._renewed[n] = time.monotonic()
                self.owned[n] = self._start_reader(n)

    def lose(self, n: int) -> None:
        """Another worker may own `n` now: stop its reader and its answers in flight."""
        in_flight = self._in_flight(n)
        log.warning("lost partition %d; cancelling its %d message(s) in flight", n, len(in_flight))
        self.owned.pop(n).cancel()
        self._renewed.pop(n, None)
        for task in list(in_flight):
            task.cancel()

    async def release_all(self) -> None:
        """Give every lease back and leave the live workers (a stopping worker)."""
        client = self.queue.aclient()
        for n in list(self.owned):
            try:
                await release(client, self.queue.keys.lease(n), self.worker_id)
            except UNAVAILABLE as exc:
                log.warning("could not release partition %d: %s", n, exc)
        # If it cannot be removed, the heartbeat entry ages out of the live window by itself.
        with contextlib.suppress(*UNAVAILABLE):
            await client.zrem(self.queue.keys.workers, self.worker_id)
        self.owned.clear()
