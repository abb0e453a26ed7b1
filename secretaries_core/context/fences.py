"""Fences: after an erase, `/new` or a purge of one user, late writes are refused.

A turn that began before its user was erased (or its context cleared) may still be waiting
on the model, or its summary may still be running, when the context is deleted. When it
ends it would write the user's text back. So clearing records a *fence* first — when the
user (or one context) was cleared, on the store's own clock — and every write of a turn
says when the turn began (`since`): a write whose turn began before a fence is refused
with `Fenced`, atomically with the check (in the Redis push script, in the SQL write's
transaction), and the answer is delivered to nobody.

A fence is named by a digest, never by the Telegram id, and lives `FENCE_TTL_S` (a day:
longer than anything in flight can take, model deadline and outages included).

On Redis Cluster a script may touch keys of one slot only: the fence keys carry a hash
tag chosen to land in the slot of the user's context keys (`slot_tag`), without naming
the user. Why hand-written: no library maps a slot back to a hash tag.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import uuid

from sqlalchemy import Column, Float, String, Table

from secretaries_core.errors import SecretariesError
from secretaries_core.plumbing.core_tables import CORE_METADATA

FENCE_TTL_S = 24 * 3600
SLOTS = 16384

# On the Core metadata (copied onto SQLModel's for Alembic: plumbing/core_tables.py).
FENCE_TABLE = Table(
    "context_fence",
    CORE_METADATA,
    Column("id", String(64), primary_key=True),
    Column("fenced_at", Float(), nullable=False),  # epoch seconds
)


class Fenced(SecretariesError):
    """The turn began before its user was erased or its context cleared: not written."""


# Every write of a context checks these fences: the digests of the users and contexts
# being talked to are kept rather than hashed again on each write.
@functools.lru_cache(maxsize=16384)
def user_digest(user_id: int) -> str:
    """The fence id of a user (one-way: the Telegram id cannot be read back from it)."""
    return hashlib.sha256(f"secretaries-fence:user:{user_id}".encode()).hexdigest()[:40]


@functools.lru_cache(maxsize=16384)
def context_digest(user_id: int, secretary_id: uuid.UUID) -> str:
    """The fence id of one (user, secretary) context."""
    text = f"secretaries-fence:context:{user_id}:{secretary_id.hex}"
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def fence_ids(user_id: int, secretary_id: uuid.UUID) -> list[str]:
    """The fences a write to one context must respect: its user's and its own."""
    return [user_digest(user_id), context_digest(user_id, secretary_id)]


def key_slot(tag: str) -> int:
    """Redis Cluster's slot of a hash tag (CRC16/XMODEM mod 16384)."""
    return binascii.crc_hqx(tag.encode(), 0) % SLOTS


@functools.cache
def _slot_tags() -> tuple[str, ...]:
    # Counting up until every slot has a tag: ~170,000 CRCs, made once per process.
    tags: list[str | None] = [None] * SLOTS
    left, i = SLOTS, 0
    while left:
        tag = f"f{i:x}"
        slot = key_slot(tag)
        if tags[slot] is None:
            tags[slot] = tag
            left -= 1
        i += 1
    return tuple(t for t in tags if t is not None)


def slot_tag(slot: int) -> str:
    """A short hash tag that Redis Cluster puts in `slot`."""
    return _slot_tags()[slot]


def pg_lock_key(user_id: int) -> int:
    """The PostgreSQL advisory lock of a user's fences (a signed 64-bit integer)."""
    digest = hashlib.sha256(f"secretaries-fence-lock:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


FENCE_SQL_CHECK = "SELECT max(fenced_at) FROM context_fence WHERE id IN (?, ?)"
