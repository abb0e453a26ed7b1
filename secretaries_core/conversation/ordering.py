"""One user, one message at a time: a per-user FIFO gate with the double-texting policy.

The gate is shared by every caller of one orchestrator — asyncio tasks on any event loop
and threads using the synchronous entry point — so its bookkeeping sits behind a thread
lock and every wake-up is delivered to the waiter's own loop with `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from secretaries_core.errors import Busy, Interrupted

Policy = Literal["enqueue", "reject", "interrupt"]
POLICIES: tuple[Policy, ...] = ("enqueue", "reject", "interrupt")


@dataclass(eq=False)
class Ticket:
    """One message's place in its user's line."""

    user_id: int
    text: str
    loop: asyncio.AbstractEventLoop
    ready: asyncio.Future[None]
    # Texts of earlier messages this one superseded (policy `interrupt`), in arrival order.
    carried: list[str] = field(default_factory=list)
    # The model call in progress, cancelled when a newer message interrupts this one.
    task: asyncio.Future[Any] | None = None
    superseded: bool = False
    committing: bool = False
    # This message's tool calls (tools/ledger.TurnLedger), and those of the messages it
    # superseded: a call they made is not made again by the turn that answers them all.
    ledger: Any = None
    carried_ledgers: list[Any] = field(default_factory=list)

    def _interrupt(self) -> None:
        # Runs on the ticket's own loop.
        if not self.ready.done():
            self.ready.set_exception(Interrupted("a newer message of the same user took over"))
        elif self.task is not None and not self.task.done():
            self.task.cancel()


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class UserGate:
    """Per-user FIFO lines; `acquire` waits for the user's turn, `release` passes it on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lines: dict[int, deque[Ticket]] = {}

    def enter(self, user_id: int, text: str) -> Ticket:
        """Take a place in the user's line now, in arrival order (call before any await)."""
        loop = asyncio.get_running_loop()
        ticket = Ticket(user_id, text, loop, loop.create_future())
        with self._lock:
            line = self._lines.get(user_id)
            if not line:
                self._lines[user_id] = deque([ticket])
                ticket.ready.set_result(None)
            else:
                line.append(ticket)
        return ticket

    async def wait(self, ticket: Ticket, policy: Policy) -> None:
        """Wait for the ticket's turn under `policy`; `Busy` or `Interrupted` when refused.

        The caller releases the ticket whatever happens.
        """
        with self._lock:
            line = self._lines.get(ticket.user_id)
            ahead = line is not None and line[0] is not ticket and not ticket.superseded
            if ahead and policy == "reject":
                raise Busy(
                    f"user {ticket.user_id}'s previous message is still being answered; "
                    "send this one again when the reply arrives"
                )
            if ahead and policy == "interrupt":
                assert line is not None
                self._supersede(line, ticket)
        await ticket.ready

    def _supersede(self, line: deque[Ticket], newer: Ticket) -> None:
        # Called under the lock: every earlier message not yet being stored gives way and
        # hands its text (and what it carried) to the newer one, oldest first.
        for earlier in line:
            if earlier is newer:
                break
            if earlier.committing or earlier.superseded:
                continue
            earlier.superseded = True
            newer.carried += [*earlier.carried, earlier.text]
            earlier.carried = []
            newer.carried_ledgers += earlier.carried_ledgers
            newer.carried_ledgers += [earlier.ledger] if earlier.ledger is not None else []
            earlier.carried_ledgers = []
            earlier.loop.call_soon_threadsafe(earlier._interrupt)

    def start_commit(self, ticket: Ticket) -> bool:
        """Mark the answer as being stored; False when a newer message superseded it first."""
        with self._lock:
            if ticket.superseded:
                return False
            ticket.committing = True
            return True

    def release(self, ticket: Ticket) -> None:
        """Leave the line; the next waiting message of the user (if any) gets its turn."""
        with self._lock:
            line = self._lines.get(ticket.user_id)
            if line is None:
                return
            was_first = bool(line) and line[0] is ticket
            try:
                line.remove(ticket)
            except ValueError:
                return
            if not line:
                del self._lines[ticket.user_id]
            elif was_first:
                following = line[0]
                following.loop.call_soon_threadsafe(_wake, following.ready)
