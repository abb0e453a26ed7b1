"""Answering one queued update: the model (once), the reply (once), or the dead letters.

Failures, by kind (docs/operations.md, "Faults"):
- outages (model, database or Redis unavailable) are waited out with capped exponential
  backoff for up to `outage_grace` seconds; longer ones are dead-lettered;
- other unexpected errors count as failed attempts (in Redis, across workers); after
  `max_attempts` of them the update is dead-lettered;
- final errors (quota, bad input, no secretary) are answered at once with the error;
- a malformed entry is dead-lettered with its reason and acknowledged, never retried.
"""

from __future__ import annotations

import asyncio
import logging
import time

from secretaries_core.context.fences import Fenced
from secretaries_core.errors import (
    BackendUnavailable,
    Interrupted,
    ModelUnavailable,
    SecretariesError,
    error_code,
)
from secretaries_core.orchestrator import Orchestrator, Reply
from secretaries_core.plumbing import backoff, tracing
from secretaries_core.plumbing.backoff import Backoff
from secretaries_core.queue.approvals import ParkingApprover
from secretaries_core.queue.client import Queue, Update
from secretaries_core.queue.live import ENDED, SUPERSEDED, LivePieces, quietly_end
from secretaries_core.redact import scrub
from secretaries_core.tools.approval import AwaitingApproval

log = logging.getLogger(__name__)
BACKOFF_CAP_S = 10.0
# Deliveries (takeovers after a crash or a lost lease) before an entry is taken to kill
# the workers that try it: far above what a crash or a restart causes.
CRASH_DELIVERIES = 20


def queued_ms(entry_id: str) -> int:
    """When a stream entry was added (ms, the queue server's clock: its id's first part)."""
    head = entry_id.split("-", 1)[0]
    return int(head) if head.isdigit() else 0


def _outage(exc: SecretariesError) -> bool:
    # An unreachable model or store comes back: wait it out.
    return isinstance(exc, ModelUnavailable | BackendUnavailable)


def _failure(exc: SecretariesError) -> bool:
    # An internal error may be transient: retried, counted as a failed attempt.
    return type(exc) is SecretariesError


def _arrived_ms(entry_id: str, update: Update) -> int:
    """When the update first arrived: its entry's time, or (queued again after a parked
    approval) the first entry's, so the fences of an erase or `/new` meanwhile apply."""
    return update.began_ms or queued_ms(entry_id)


class Answerer:
    """Settles updates for a worker: answers, replies, dead letters."""

    def __init__(
        self,
        orchestrator: Orchestrator,
        queue: Queue,
        stopping: asyncio.Event,
        *,
        max_attempts: int,
        retry_delay: float,
        outage_grace: float,
        live_interval: float | None = 0.25,
    ) -> None:
        self.orch = orchestrator
        self.queue = queue
        self._stopping = stopping
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.outage_grace = outage_grace
        self.live_interval = live_interval
        self.answered = 0
        self.superseded = 0
        self.dead_lettered = 0
        self.fenced = 0
        self.parked = 0

    async def bury(self, n: int, entry_id: str, fields: dict[str, str], reason: str) -> None:
        """Dead-letter an entry that can never be answered, then let the next ones pass."""
        await self._dead_letter(n, entry_id, fields, reason, f"partition {n} entry {entry_id}")
        await self.queue.ack(n, entry_id)

    async def _dead_letter(
        self, n: int, entry_id: str, fields: dict[str, str], reason: str, what: str
    ) -> None:
        reason = scrub(reason)
        await self.queue.dead_letter(n, entry_id, fields, reason)
        self.dead_lettered += 1
        self.orch.metrics.errors.labels(type="DeadLetter").inc()
        log.error("%s dead-lettered: %s", what, reason)

    async def settle(
        self,
        n: int,
        entry_id: str,
        update: Update,
        redelivered: bool,
        entered: asyncio.Event | None = None,
    ) -> None:
        """Answer `update` (or dead-letter it); `entered` is set once it is in its user's line."""
        if redelivered and await self.queue.deliveries(n, entry_id) > CRASH_DELIVERIES:
            error = SecretariesError(
                f"delivered more than {CRASH_DELIVERIES} times without an answer"
            )
            await self.give_up(n, entry_id, update, error)
            return
        since_ms = _arrived_ms(entry_id, update)
        live = (
            LivePieces(self.queue, update, interval=self.live_interval, since_ms=since_ms)
            if self.live_interval is not None
            else None
        )
        outcome = ENDED
        try:
            if live is not None:
                await live.begin()
            outcome = await self._settle(n, entry_id, update, live, entered, redelivered)
        finally:
            if live is not None:
                await quietly_end(live, outcome)

    async def _settle(
        self,
        n: int,
        entry_id: str,
        update: Update,
        live: LivePieces | None,
        entered: asyncio.Event | None,
        redelivered: bool = False,
    ) -> str:
        key = str(update.update_id)
        failed = await self.queue.failed_attempts(n, update, add=False)
        outage_since: float | None = None
        waits = Backoff(self.retry_delay, BACKOFF_CAP_S)
        began = _arrived_ms(entry_id, update) / 1000
        approver = ParkingApprover(
            self.queue, update, began, self.orch.settings.confirm_timeout_seconds
        )
        while True:
            try:
                # ahandle takes the user's place in line before its first await: the
                # user's next message may start once this one is set.
                if entered is not None:
                    entered.set()
                # Checks the stored context for this update id before the model is asked;
                # its trace continues the one that queued it.
                with tracing.continued(update.traceparent):
                    reply = await self.orch.ahandle(
                        update.telegram_id,
                        update.text,
                        username=update.username,
                        idempotency_key=key,
                        on_piece=live.feed if live is not None else None,
                        on_tool=live.tool if live is not None else None,
                        redelivered=redelivered,
                        began=began,
                        approver=approver,
                    )
            except Fenced:
                # The user was erased (or the conversation cleared) after this update was
                # queued: nothing of it was stored, and nothing is delivered.
                await self.queue.ack(n, entry_id)
                self.fenced += 1
                return ENDED
            except AwaitingApproval as waiting:
                # Parked until the user decides (queue/approvals.py): the entry is done
                # here, and no worker holds the turn meanwhile.
                await self.queue.ack(n, entry_id)
                self.parked += 1
                log.info("update %s waits for approval of %s", key, waiting.approval.function)
                return ENDED
            except Interrupted:
                # A newer message of the same user took over (policy `interrupt`): nothing
                # of this answer was stored, the newer one carries this text, and the user
                # gets no reply to this one, only to the newer.
                await self.queue.ack(n, entry_id)
                self.superseded += 1
                return SUPERSEDED
            except SecretariesError as exc:
                if live is not None:
                    live.restart()
                if _outage(exc) and self._stopping.is_set():
                    return ENDED  # left pending: whoever owns the partition next answers it
                if _outage(exc):
                    now = time.monotonic()
                    outage_since = outage_since if outage_since is not None else now
                    if now - outage_since <= self.outage_grace:
                        log.warning(
                            "update %s waits out an outage (%.0fs so far): %s",
                            key,
                            now - outage_since,
                            scrub(str(exc)),
                        )
                        await asyncio.sleep(waits.next())
                        continue
                elif _failure(exc):
                    failed = await self.queue.failed_attempts(n, update, add=True)
                    if failed < self.max_attempts:
                        log.warning("update %s attempt %d failed: %s", key, failed, exc)
                        await asyncio.sleep(
                            backoff.delay(failed - 1, first=self.retry_delay, cap=BACKOFF_CAP_S)
                        )
                        continue
                else:
                    await self.reply(n, entry_id, update, None, exc)
                    return ENDED
                await self.give_up(n, entry_id, update, exc)
                return ENDED
            await self.reply(n, entry_id, update, reply, None)
            return ENDED

    async def give_up(self, n: int, entry_id: str, update: Update, error: SecretariesError) -> None:
        reason = f"{type(error).__name__}: {error}"
        await self._dead_letter(n, entry_id, update.fields(), reason, f"update {update.update_id}")
        await self.reply(n, entry_id, update, None, error)

    async def reply(
        self,
        n: int,
        entry_id: str,
        update: Update,
        reply: Reply | None,
        error: SecretariesError | None,
    ) -> None:
        fields = {
            "secretary": reply.secretary if reply else "",
            "secretary_id": str(reply.secretary_id) if reply else "",
            "version": str(reply.version) if reply else "",
            "text": reply.text if reply else "",
            "error": scrub(str(error)) if error else "",
            "error_code": error_code(error) if error else "",
        }
        try:
            await self.queue.publish(update, fields, _arrived_ms(entry_id, update))
        except Fenced:
            self.fenced += 1  # erased meanwhile: delivered to nobody
        else:
            self.answered += 1
        await self.queue.ack(n, entry_id)
