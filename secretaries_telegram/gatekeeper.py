"""Every send of a `Bot` through the bot's flood control (an aiogram request middleware).

Installed once on the bot's session, it covers every path that talks to Telegram — the
streamed replies, the sender of the workers' replies, the drafts, command answers — so no
send can go around the limits. Calls that are not sends to a chat (`getUpdates`,
`answerCallbackQuery`, `sendChatAction`) pass untouched.
"""

from __future__ import annotations

from typing import Any

from aiogram import Bot
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import TelegramRetryAfter
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType

from secretaries_telegram.flood import FloodControl, Throttled, is_intermediate

LIMITED = frozenset(
    {
        "sendMessage",
        "sendMessageDraft",
        "editMessageText",
        "editMessageReplyMarkup",
        "deleteMessage",
        "sendPhoto",
        "sendDocument",
        "copyMessage",
        "forwardMessage",
    }
)


class Gatekeeper(BaseRequestMiddleware):
    """Takes a flood-control slot before each send; records Telegram's 429 for everyone."""

    def __init__(self, flood: FloodControl) -> None:
        self.flood = flood

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        """Wait for (or, for an intermediate update, try) a slot; then send."""
        chat: Any = getattr(method, "chat_id", None)
        if method.__api_method__ not in LIMITED or not isinstance(chat, int):
            return await make_request(bot, method)
        if is_intermediate():
            if not await self.flood.take_intermediate(chat):
                raise Throttled(f"{method.__api_method__} to chat {chat} skipped")
        else:
            await self.flood.take_final(chat)
        try:
            return await make_request(bot, method)
        except TelegramRetryAfter as exc:
            self.flood.metrics.flood_refused.inc()
            await self.flood.hold(chat, float(exc.retry_after))
            raise
