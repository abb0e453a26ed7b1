"""How a message is stored in a Redis context list: one compact JSON object per item.

`{"r": role, "c": content, "t": score, "m": metadata?}` — compact JSON never holds a raw
newline, which lets the read scripts join a context's items into one reply.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

from secretaries_core.context.base import Message, turn_item
from secretaries_core.context.redis_admin import from_score, score
from secretaries_core.plumbing.memo import each_once

log = logging.getLogger(__name__)

# Decoded items, shared by the stores of the process (an item's message does not depend
# on the store). Emptied when it outgrows the cap: cheaper than an LRU order on each hit.
DECODED_CAP = 50_000
_DECODED: dict[bytes, Message] = {}


def encode(message: Message) -> str:
    """One message as the item stored for it."""
    payload: dict[str, Any] = {"r": message.role, "c": message.content, "t": score(message.at)}
    if message.metadata:
        payload["m"] = dict(message.metadata)
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def guard(messages: list[Message]) -> str:
    """The turn id of `messages` exactly as it appears in their JSON ('' when none).

    The value as stored, not as `turn_id` spells it: an id given as a number is stored as
    one (`"update_id":17`), and a guard of `"update_id":"17"` would never find it."""
    turn = turn_item(messages)
    if turn is None:
        return ""
    return json.dumps(dict([turn]), separators=(",", ":"), ensure_ascii=False)[1:-1]


def decode_joined(raw: bytes | str | None) -> list[Message]:
    """The messages of a read script's reply: stored items joined by newlines."""
    if not raw:
        return []
    items = raw.split(b"\n") if isinstance(raw, bytes) else raw.encode().split(b"\n")
    return decode_items(items)


def decode_items(items: Iterable[bytes]) -> list[Message]:
    """Stored items as messages. A user's context is read again on each of their messages:
    an item read before maps to the message it decoded to (keyed by its whole stored text,
    so never to another message). An item that is not ours is left out, and logged: one
    foreign or damaged item must not fail every later message of that user."""
    decoded = each_once(_DECODED, items, _item, DECODED_CAP)
    if not _SEEN_UNREADABLE:  # the usual case: no scan of the list for one
        return decoded
    return [message for message in decoded if message is not UNREADABLE]


UNREADABLE = Message("", "", from_score(0))
"""What an item that is not a stored message decodes to (then dropped)."""


def _item(stored: bytes) -> Message:
    try:
        d = json.loads(stored)
        return Message(d["r"], d["c"], from_score(d["t"]), d.get("m"))
    except (ValueError, TypeError, KeyError, OverflowError, OSError) as exc:
        log.warning("skipping a context item that is not a stored message (%s): %.80r", exc, stored)
        if not _SEEN_UNREADABLE:
            _SEEN_UNREADABLE.append(True)
        return UNREADABLE


_SEEN_UNREADABLE: list[bool] = []
"""Non-empty once any item failed to decode in this process (then reads filter)."""
