"""Telegram's webhook: updates pushed to `serve`, handled by the same router as long polling.

Every API replica can take the webhook. Telegram resends an update it got no 200 for (after
a timeout, to whichever replica the load balancer picks), so each `update_id` is taken by
the first replica that sees it (a Redis key, `Queue.afirst_sighting`) and answered 200 at
once by the others. A text message is queued before the 200 (one Redis script: the answer
comes from a worker, never from inside the request, so a slow model cannot make Telegram
resend); commands, the picker's buttons and reactions talk to the Bot API themselves and
run after the 200, as tasks. A replica that fails to take an update forgets its sighting
and answers 5xx, so Telegram's next try is taken.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.types import Update
from pydantic import ValidationError

from secretaries_core.errors import InvalidInput
from secretaries_core.orchestrator import Orchestrator
from secretaries_core.queue.client import Queue
from secretaries_telegram.approvals import QueueApprovals
from secretaries_telegram.gatekeeper import Gatekeeper
from secretaries_telegram.router import create_router

log = logging.getLogger(__name__)
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
CLOSE_WAIT_S = 5.0


def _plain_text(update: Update) -> bool:
    """A text message that is no command: the router only queues it."""
    message = update.message
    return bool(message is not None and message.text and not message.text.startswith("/"))


class WebhookIngress:
    """One API process's side of the webhook: check, dedupe, hand to the router."""

    def __init__(
        self,
        orchestrator: Orchestrator,
        queue: Queue,
        *,
        token: str,
        secret: str,
        api_url: str | None = None,
    ) -> None:
        from secretaries_telegram.run import flood_control, make_bot

        self.queue = queue
        self.secret = secret.encode()
        self.bot: Bot = make_bot(token, api_url)
        self.bot.session.middleware(Gatekeeper(flood_control(self.bot, queue, orchestrator)))
        self.dispatcher = Dispatcher()
        self.dispatcher.include_router(
            create_router(
                orchestrator,
                queue=queue,
                drafts=orchestrator.settings.telegram_drafts,
                approvals=QueueApprovals(queue, orchestrator.store),
            )
        )
        self._later: set[asyncio.Task[None]] = set()

    def authentic(self, header: str | None) -> bool:
        """True when the secret header is the configured one (constant-time comparison)."""
        return header is not None and hmac.compare_digest(header.encode(), self.secret)

    async def take(self, payload: Any) -> bool:
        """Handle one pushed update; False when another delivery of it was taken before."""
        try:
            update = Update.model_validate(payload, context={"bot": self.bot})
        except ValidationError as exc:
            raise InvalidInput(f"not a Telegram update: {exc.errors()[0]['msg']}") from None
        if not await self.queue.afirst_sighting(self.bot.id, update.update_id):
            return False
        if not _plain_text(update):
            task = asyncio.ensure_future(self._handle(update))
            self._later.add(task)
            task.add_done_callback(self._later.discard)
            return True
        try:
            await self.dispatcher.feed_update(self.bot, update)
        except BaseException:
            await self.queue.aforget_sighting(self.bot.id, update.update_id)
            raise
        return True

    async def _handle(self, update: Update) -> None:
        try:
            await self.dispatcher.feed_update(self.bot, update)
        except Exception as exc:  # the 200 is sent: logged, never raised into the void
            log.error("webhook update %s failed", update.update_id, exc_info=exc)

    async def aclose(self) -> None:
        """Let the updates under way finish (bounded), then close the Bot API session."""
        if self._later:
            _done, waiting = await asyncio.wait(set(self._later), timeout=CLOSE_WAIT_S)
            for task in waiting:
                task.cancel()
        await self.bot.session.close()
