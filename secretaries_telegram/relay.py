"""Sending the workers' replies: the replies stream → Telegram, once each, in order.

A consumer group (`senders`) on the replies stream: a restarted bot continues where it
stopped, several bot processes share the work, and an entry is acknowledged only once it
was sent (a crash in between sends it again rather than losing it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from aiogram import Bot
from redis.exceptions import ResponseError

from secretaries_core.queue import Queue
from secretaries_core.queue.client import UNAVAILABLE, decode_fields
from secretaries_telegram import texts
from secretaries_telegram.split import split_text
from secretaries_telegram.streaming import patiently

log = logging.getLogger(__name__)
GROUP = "senders"


async def relay(bot: Bot, queue: Queue) -> None:
    """Forever: read new replies and send them (split at 4,096), then acknowledge them."""
    client, key = queue.aclient(), queue.keys.replies
    me = f"{socket.gethostname()}-{os.getpid()}"
    try:
        await client.xgroup_create(key, GROUP, id="$", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    start = "0"  # first what this sender took and did not acknowledge, then new ones
    while True:
        try:
            found = await client.xreadgroup(GROUP, me, {key: start}, count=50, block=1000)
        except UNAVAILABLE as exc:
            log.warning("replies stream unreachable: %s", exc)
            await asyncio.sleep(1)
            continue
        entries = [e for _stream, rows in found or [] for e in rows]
        if start != ">" and not entries:
            start = ">"
            continue
        for raw_id, raw in entries:
            fields = decode_fields(raw)
            chat = int(fields.get("chat_id") or fields["telegram_id"])
            if fields.get("error"):
                parts = [texts.for_code(fields.get("error_code", ""), fields["error"])]
            else:
                parts = split_text(fields.get("text") or "…")
            await _send(bot, chat, parts)
            await client.xack(key, GROUP, raw_id)


async def _send(bot: Bot, chat: int, parts: list[str]) -> None:
    for part in parts:
        await patiently(lambda: bot.send_message(chat, part))  # noqa: B023  (awaited at once)
