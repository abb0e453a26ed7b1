"""Pieces of a reply while a worker writes it: published on the live stream for the bot.

A worker does not publish every piece the model sends: it publishes the text so far at
most every `interval` seconds (the bot could not show more often anyway: Telegram allows
about one update a second per chat), so a fast model costs a few entries per reply. Each
entry carries the whole text so far (the first 4,096 characters, what one Telegram
message can show), so a reader that missed entries, or a bot that restarted, shows the
right text from the next one; `attempt` changes when a retry starts the reply again.

The stream is a preview, never the source of truth: it is capped (`MAXLEN ~`) and expires
when nobody writes to it; the complete reply goes on the replies stream, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from secretaries_core.conversation.tooling import with_status
from secretaries_core.queue.client import LIVE_ADD, UNAVAILABLE, Queue, Update

log = logging.getLogger(__name__)
LIVE_CAP = 20_000
LIVE_TTL_S = 600
PREVIEW_CHARS = 4096
INTERVAL_S = 0.25
WRITING, ENDED, SUPERSEDED = "writing", "ended", "superseded"


class LivePieces:
    """The text so far of one reply, published on the live stream at a bounded rate."""

    def __init__(
        self, queue: Queue, update: Update, *, interval: float = INTERVAL_S, since_ms: int = 0
    ) -> None:
        self.queue = queue
        self.update = update
        # When the update was queued: once its user is erased after that, nothing more
        # of this reply is published (the erase deleted what was).
        self.since_ms = since_ms
        self.interval = interval
        self.attempt = uuid.uuid4().hex[:8]
        self.published = 0
        self._parts: list[str] = []
        self._size = 0
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._warned = False
        self.status = ""  # the running tool's line, shown under the text so far

    def feed(self, piece: str) -> None:
        """The model produced `piece` (called synchronously by the message path)."""
        if self._size < PREVIEW_CHARS:
            self._parts.append(piece)
            self._size += len(piece)
        self._changed.set()
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    def tool(self, function: str, state: str) -> None:
        """A tool call started or ended (called synchronously by the message path)."""
        from secretaries_core.conversation.tooling import status_line

        self.status = status_line(function) if state == "started" else ""
        self._changed.set()
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    def restart(self) -> None:
        """A new attempt at the same reply: what was shown is replaced by what comes next."""
        self._stop()
        self._parts, self._size = [], 0
        self.attempt = uuid.uuid4().hex[:8]

    async def begin(self) -> None:
        """Say the reply is being written (a private chat shows "Thinking…")."""
        await self._publish(WRITING, "")

    async def end(self, state: str = ENDED) -> None:
        """No more pieces for this reply (`SUPERSEDED`: a newer message took over)."""
        self._stop()
        await self._publish(state, "")

    def _stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            text = with_status("".join(self._parts), self.status)
            await self._publish(WRITING, text[:PREVIEW_CHARS])
            await asyncio.sleep(self.interval)

    async def _publish(self, state: str, text: str) -> None:
        update = self.update
        entry = {
            "chat_id": str(update.chat),
            "telegram_id": str(update.telegram_id),
            "update_id": str(update.update_id),
            "thread_id": str(update.thread_id or ""),
            "attempt": self.attempt,
            "state": state,
            "text": text,
        }
        keys = [self.queue.keys.live, self.queue.keys.fence(update.telegram_id)]
        flat = [part for pair in entry.items() for part in pair]
        try:
            args = [self.since_ms, LIVE_CAP, LIVE_TTL_S, *flat]
            if await self.queue.aclient().eval(LIVE_ADD, 2, *keys, *args):
                self.published += 1
        except Exception as exc:  # a preview must never fail the answer
            # A preview lost (Redis away, a refused write): the final reply still goes on
            # the replies stream. Said once per reply, not once per piece.
            if not self._warned:
                self._warned = True
                level = logging.WARNING if isinstance(exc, UNAVAILABLE) else logging.ERROR
                log.log(level, "live pieces of update %s not published: %r", update.update_id, exc)


async def quietly_end(live: LivePieces, state: str = ENDED) -> None:
    """`live.end(state)` within a second, whatever happens (cleanup never blocks a reply)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(1.0):
            await live.end(state)
