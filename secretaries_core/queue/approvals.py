"""Approval in queue mode: a turn waiting for the user is parked, not held by a worker.

When a queued turn reaches a `--confirm` call with no decision kept, its worker
- records the approval once (`P q:{r}:approval:<id>`, the id derived from the user and the
  call id, so a redelivered turn finds it and never asks twice): the update to resume, the
  call, the chat, when it times out;
- puts an `approval` entry on the replies stream (a bot's sender shows it as an inline
  keyboard, Approve / Deny, naming the tool and its arguments);
- parks: the update is acknowledged and the worker's slot is free (`AwaitingApproval`).

A decision comes from a press (the bot's router: only the user who was asked) or from the
timeout (`SECRETARIES_CONFIRM_TIMEOUT`, swept by every worker). Either one writes the
decision into the tool ledger with the call id — once: the first of a press and a timeout
wins — takes the parked record (GETDEL: exactly one resume), and queues the update again,
straight into its partition's stream. Whichever worker reads it answers the turn again:
its rounds come from the ledger, the decision is there, and the call is sent only if it
was approved. An erased user's parked approvals are deleted with the rest of the queue's
keys of theirs; `/new` or an erase while waiting fences the update, so nothing of it runs.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from secretaries_core.context.base import ContextStore
from secretaries_core.context.fences import Fenced
from secretaries_core.queue.client import UNAVAILABLE, Queue, Update
from secretaries_core.tools.approval import (
    APPROVED,
    DENIED,
    TIMED_OUT,
    Approval,
    AwaitingApproval,
)
from secretaries_core.tools.ledger import ToolLedger

KEEP_AFTER_S = 24 * 3600  # a record outlives its timeout this long (a late press is told)
SWEEP_BATCH = 100


def approval_id(telegram_id: int, call_id: str) -> str:
    """The id of the approval of `call_id` for the user (short: it rides in a button)."""
    return hashlib.sha256(f"{telegram_id}:{call_id}".encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Parked:
    """A parked approval as recorded."""

    approval_id: str
    telegram_id: int
    chat_id: int
    secretary_id: uuid.UUID
    call_id: str
    function: str
    summary: str
    began: float
    update: dict[str, str]

    def doc(self) -> dict[str, Any]:
        """The record's JSON."""
        return {
            "telegram_id": self.telegram_id,
            "chat_id": self.chat_id,
            "secretary_id": str(self.secretary_id),
            "call_id": self.call_id,
            "function": self.function,
            "summary": self.summary,
            "began": self.began,
            "update": self.update,
        }

    @classmethod
    def of(cls, approval: str, raw: Any) -> Parked:
        """Back from the record's JSON."""
        doc = json.loads(raw)
        return cls(
            approval,
            int(doc["telegram_id"]),
            int(doc["chat_id"]),
            uuid.UUID(doc["secretary_id"]),
            str(doc["call_id"]),
            str(doc["function"]),
            str(doc["summary"]),
            float(doc["began"]),
            {str(k): str(v) for k, v in doc["update"].items()},
        )


class ParkingApprover:
    """The approver of one queued update's turn: asks once, then parks the turn."""

    def __init__(self, queue: Queue, update: Update, began: float, timeout: float) -> None:
        self.queue = queue
        self.update = update
        self.began = began
        self.timeout = timeout

    async def __call__(self, approval: Approval) -> str:
        """Record and show the approval (once), then raise `AwaitingApproval`."""
        keys = self.queue.keys
        found = approval_id(approval.telegram_id, approval.call_id)
        parked = Parked(
            found,
            approval.telegram_id,
            self.update.chat,
            approval.secretary_id,
            approval.call_id,
            approval.function,
            approval.summary(),
            self.began,
            {k: v for k, v in self.update.fields().items() if k != "traceparent"},
        )
        deadline_ms = int((time.time() + self.timeout) * 1000)
        client = self.queue.aclient()
        try:
            first = await client.set(
                keys.approval(found),
                json.dumps(parked.doc(), ensure_ascii=False),
                nx=True,
                ex=int(self.timeout + KEEP_AFTER_S),
            )
            if first:
                await client.sadd(keys.approvals_of(approval.telegram_id), found)
                await client.expire(
                    keys.approvals_of(approval.telegram_id), int(self.timeout + KEEP_AFTER_S)
                )
                await client.zadd(keys.approvals, {found: deadline_ms})
                entry = {
                    "kind": "approval",
                    "approval": found,
                    "update_id": str(self.update.update_id),
                    "telegram_id": str(approval.telegram_id),
                    "chat_id": str(self.update.chat),
                    **(
                        {"thread_id": str(self.update.thread_id)}
                        if self.update.thread_id is not None
                        else {}
                    ),
                    "text": parked.summary,
                }
                await client.xadd(keys.replies, entry, maxlen=100_000, approximate=True)
        except UNAVAILABLE as exc:
            raise self.queue.unavailable(exc) from exc
        raise AwaitingApproval(approval)


async def parked(queue: Queue, found: str) -> Parked | None:
    """The parked approval `found`, if it is still waiting."""
    try:
        raw = await queue.aclient().get(queue.keys.approval(found))
    except UNAVAILABLE as exc:
        raise queue.unavailable(exc) from exc
    return Parked.of(found, raw) if raw is not None else None


async def decide(
    queue: Queue, store: ContextStore, found: Parked, decision: str
) -> tuple[str, bool]:
    """Keep `decision` (unless one was kept first) and resume the turn; (the decision that
    counts, True when this call resumed it)."""
    ledger = ToolLedger(store)
    now = datetime.now(UTC)
    try:
        await ledger.write_decision(
            found.telegram_id, found.secretary_id, found.call_id, decision, found.began, now
        )
        kept = await ledger.decision(found.telegram_id, found.secretary_id, found.call_id)
    except Fenced:
        # Erased or `/new` while waiting: declined; the resumed update is fenced too.
        kept = DENIED
    return kept or decision, await _resume(queue, found)


async def _resume(queue: Queue, found: Parked) -> bool:
    keys = queue.keys
    client = queue.aclient()
    try:
        taken = await client.getdel(keys.approval(found.approval_id))
        if taken is None:
            return False  # resumed already (a press and the timeout racing)
        await client.zrem(keys.approvals, found.approval_id)
        await client.srem(keys.approvals_of(found.telegram_id), found.approval_id)
        n = keys.partition(found.telegram_id)
        resumed = {
            **found.update,
            "resumed": found.approval_id,
            "began_ms": str(int(found.began * 1000)),
        }
        await client.xadd(keys.inbound(n), resumed)
    except UNAVAILABLE as exc:
        raise queue.unavailable(exc) from exc
    return True


async def sweep_timeouts(queue: Queue, store: ContextStore) -> int:
    """Decline and resume every parked approval whose time is up; how many."""
    keys = queue.keys
    client = queue.aclient()
    now_ms = int(time.time() * 1000)
    try:
        due = await client.zrangebyscore(keys.approvals, "-inf", now_ms, start=0, num=SWEEP_BATCH)
    except UNAVAILABLE as exc:
        raise queue.unavailable(exc) from exc
    done = 0
    for raw in due:
        found_id = raw.decode() if isinstance(raw, bytes) else str(raw)
        # Claimed by removing it: one worker times each approval out.
        if not await client.zrem(keys.approvals, found_id):
            continue
        found = await parked(queue, found_id)
        if found is None:
            continue
        decision, _ = await decide(queue, store, found, TIMED_OUT)
        await client.xadd(
            keys.replies,
            {
                "kind": "approval_end",
                "approval": found_id,
                "telegram_id": str(found.telegram_id),
                "chat_id": str(found.chat_id),
                "text": ended_text(decision, found.summary),
            },
            maxlen=100_000,
            approximate=True,
        )
        done += 1
    return done


def ended_text(decision: str, summary: str) -> str:
    """What the keyboard's message says once decided."""
    mark = {APPROVED: "✅ Approved", DENIED: "❌ Declined", TIMED_OUT: "⌛ No answer, declined"}
    return f"{mark.get(decision, '❌ Declined')}: {summary}"
