"""What a chat shows of a reply being written, shared by every bot process through Redis.

With workers, the pieces of a reply are drawn by whichever bot process reads them (the
drafter) and the final text is sent by whichever reads the reply (the sender). One key per
reply says what the chat shows — nothing yet, the id of the message growing by edits (a
group), or "final" once the final text went out — and a short lock serialises the two, so
a late draft never lands on top of the final text and a group gets exactly one message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from redis.exceptions import RedisError

from secretaries_core.queue.client import UNAVAILABLE, Queue

log = logging.getLogger(__name__)
FINAL = "final"
KEEP_S = 3600
LOCK_MS = 5000
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Board:
    """The per-reply keys `shown:<chat>:<update>` and their locks."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    def _key(self, chat: int, update_id: int) -> str:
        return self.queue.keys.shown(chat, update_id)

    @contextlib.asynccontextmanager
    async def held(self, chat: int, update_id: int, *, wait: float = 0.0) -> AsyncIterator[bool]:
        """Hold the reply's lock for the block (waiting up to `wait` s); yields whether held."""
        client, key, me = (
            self.queue.aclient(),
            self._key(chat, update_id) + ":lock",
            uuid.uuid4().hex,
        )
        deadline = time.monotonic() + wait
        while not await client.set(key, me, nx=True, px=LOCK_MS):
            if time.monotonic() >= deadline:
                yield False
                return
            await asyncio.sleep(0.05)
        try:
            yield True
        finally:
            with contextlib.suppress(*UNAVAILABLE):
                await client.eval(_UNLOCK, 1, key, me)

    async def state(self, chat: int, update_id: int) -> str | None:
        """None, a message id (as text) or `FINAL`."""
        raw: Any = await self.queue.aclient().get(self._key(chat, update_id))
        return raw.decode() if isinstance(raw, bytes) else raw

    async def growing(self, chat: int, update_id: int, message_id: int) -> None:
        """The reply grows in `message_id` (edits) from now on."""
        await self.queue.aclient().set(self._key(chat, update_id), str(message_id), ex=KEEP_S)

    async def finalise(self, chat: int, update_id: int) -> int | None:
        """Mark the reply final (no more drafts or edits); the message it grew in, if any.

        Waits a moment for a drafter touching the reply to finish; if Redis cannot be
        reached, the final text still goes out (as a new message).
        """
        try:
            async with self.held(chat, update_id, wait=LOCK_MS / 1000):
                return await self.mark_final(chat, update_id)
        except (*UNAVAILABLE, RedisError) as exc:
            # The final text goes out whatever the board's state: at worst a group keeps
            # the partial message beside it; a reply is never lost for a preview's sake.
            log.warning("reply to update %s: board unusable, sending anew: %r", update_id, exc)
            return None

    async def mark_final(self, chat: int, update_id: int) -> int | None:
        """Set the reply `FINAL` (call with its lock held); the message it grew in, if any."""
        raw: Any = await self.queue.aclient().set(
            self._key(chat, update_id), FINAL, ex=KEEP_S, get=True
        )
        old = raw.decode() if isinstance(raw, bytes) else raw
        return int(old) if old and old.isdigit() else None
