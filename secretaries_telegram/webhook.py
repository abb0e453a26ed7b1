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
from secretaries_telegram.router import addressed, create_router, queued_text

log = logging.getLogger(__name__)
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
CLOSE_WAIT_S = 5.0


PlainText = tuple[int, int, str | None, int, str, int | None, str, int | None]


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _plain_text_fields(payload: Any) -> PlainText | None:
    """(update id, user id, username, chat id, chat type, thread id, text, id of the
    author replied to) of a text message that is no command — the router only queues
    those — or None for anything else (then aiogram's model reads it)."""
    if not isinstance(payload, dict) or set(payload) != {"update_id", "message"}:
        return None
    message, update_id = payload["message"], _integer(payload["update_id"])
    if not isinstance(message, dict) or update_id is None:
        return None
    text, user, chat = message.get("text"), message.get("from"), message.get("chat")
    if not isinstance(text, str) or not text or text.startswith("/"):
        return None
    if not isinstance(user, dict) or not isinstance(chat, dict):
        return None
    user_id, chat_id, chat_type = (
        _integer(user.get("id")),
        _integer(chat.get("id")),
        chat.get("type"),
    )
    username, thread = user.get("username"), message.get("message_thread_id")
    if user_id is None or chat_id is None or not isinstance(chat_type, str):
        return None
    if username is not None and not isinstance(username, str):
        return None
    if thread is not None and _integer(thread) is None:
        return None
    replied = message.get("reply_to_message")
    replied_to = None
    if replied is not None:
        author = replied.get("from") if isinstance(replied, dict) else None
        replied_to = _integer(author.get("id")) if isinstance(author, dict) else None
    return update_id, user_id, username, chat_id, chat_type, thread, text, replied_to


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
        plain = _plain_text_fields(payload)
        if plain is not None:
            # Most updates: a user's text. Read from the JSON as the router would read it
            # from aiogram's model (the same rule, `addressed`, and entry, `queued_text`),
            # without building that model: it cost more than the rest of the request.
            me = await self.bot.me()
            (update_id, user_id, username, chat_id, chat_type, thread_id, text, replied_to) = plain
            if not addressed(chat_type, replied_to, text, me):
                return True
            # The queue's script takes an update id once per user, across replicas.
            return await self.queue.aenqueue(
                queued_text(update_id, user_id, username, chat_id, thread_id, text, me)
            )
        try:
            update = Update.model_validate(payload, context={"bot": self.bot})
        except ValidationError as exc:
            raise InvalidInput(f"not a Telegram update: {exc.errors()[0]['msg']}") from None
        if not await self.queue.afirst_sighting(self.bot.id, update.update_id):
            return False
        task = asyncio.ensure_future(self._handle(update))
        self._later.add(task)
        task.add_done_callback(self._later.discard)
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
