"""Erasing one user from the queue: every entry, marker and key that holds them.

First a fence (keys.py, `fence`): a worker still answering one of the user's updates
publishes neither its reply nor its live pieces afterwards (the publish scripts check it).
Then, on the queue's Redis:
- the user's updates not answered yet (their partition's stream): dropped and counted;
- their replies, dead letters and live pieces: deleted from those streams;
- their dedupe, sent and failed-attempt markers (one key each per user);
- what chats show of their replies (`shown` keys of the updates found above);
- the flood-control keys of their private chat, for every bot that ran on this queue;
- their parked approvals (the update text is in them): never resumed.

The streams are read whole (their length is capped: replies and dead letters at 100,000,
live pieces at 20,000), a thousand entries per round trip.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ResponseError

from secretaries_core.context.fences import FENCE_TTL_S
from secretaries_core.context.redis_scripts import SCRIPTS
from secretaries_core.queue.client import UNAVAILABLE, Queue, decode_fields
from secretaries_core.queue.keys import GROUP

READ_COUNT = 1000


@dataclass(frozen=True)
class QueueErased:
    """What erasing one user removed from the queue."""

    queued: int = 0  # updates not answered yet, dropped
    replies: int = 0
    dead_letters: int = 0
    live: int = 0


def erase_user(queue: Queue, telegram_id: int) -> QueueErased:
    """Fence the user, then delete everything of theirs on the queue (module docstring)."""
    try:
        return _erase(queue, telegram_id)
    except UNAVAILABLE as exc:
        raise queue.unavailable(exc) from exc


def _erase(queue: Queue, telegram_id: int) -> QueueErased:
    client, keys = queue.client(), queue.keys
    # The context store's fence script: the key set to the server's time, for a day.
    client.eval(SCRIPTS["fence"][0], 1, keys.fence(telegram_id), FENCE_TTL_S * 1000)
    updates: set[str] = set()
    n = keys.partition(telegram_id)
    inbound = keys.inbound(n)
    queued = _delete_matching(client, inbound, telegram_id, updates, group=GROUP)
    replies = _delete_matching(client, keys.replies, telegram_id, updates, group="senders")
    dead = _delete_matching(client, keys.dead, telegram_id, updates)
    live = _delete_matching(client, keys.live, telegram_id, updates)
    doomed = [keys.seen(n, telegram_id), keys.fails(n, telegram_id), keys.sent(telegram_id)]
    for update in updates:
        shown = keys.shown(telegram_id, update)
        doomed += [shown, f"{shown}:lock"]
    for raw in client.smembers(keys.approvals_of(telegram_id)):
        found = raw.decode() if isinstance(raw, bytes) else str(raw)
        client.zrem(keys.approvals, found)
        doomed += [keys.approval(found), f"{keys.approval(found)}:msg"]
    doomed.append(keys.approvals_of(telegram_id))
    for bot in client.smembers(keys.bots):
        doomed += keys.flood_chat(bot.decode() if isinstance(bot, bytes) else bot, telegram_id)
    for key in doomed:  # one by one: on a cluster they live in different slots
        client.delete(key)
    return QueueErased(queued, replies, dead, live)


def _delete_matching(
    client: Any, stream: str, telegram_id: int, updates: set[str], group: str | None = None
) -> int:
    """Delete (and acknowledge in `group`) the entries of `stream` naming the user; the
    update ids found go into `updates`."""
    who = str(telegram_id)
    found: list[str] = []
    after = "-"
    while True:
        rows = client.xrange(stream, min=after, count=READ_COUNT)
        if not rows:
            break
        for raw_id, raw in rows:
            entry_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            fields = decode_fields(raw)
            if who in (fields.get("telegram_id"), fields.get("chat_id")):
                found.append(entry_id)
                if fields.get("update_id"):
                    updates.add(fields["update_id"])
        after = "(" + (rows[-1][0].decode() if isinstance(rows[-1][0], bytes) else rows[-1][0])
    for start in range(0, len(found), READ_COUNT):
        chunk = found[start : start + READ_COUNT]
        if group is not None:
            with contextlib.suppress(ResponseError):  # no group yet: nothing to acknowledge
                client.xack(stream, group, *chunk)
        client.xdel(stream, *chunk)
    return len(found)
