"""Time-ordered (version 7) UUIDs for primary keys that are appended to."""

from __future__ import annotations

import os
import time
import uuid


def uuid7() -> uuid.UUID:
    """A time-ordered (version 7) UUID: 48-bit Unix milliseconds, then random bits.

    Link ids are made in SQL the same way during bulk migration; ordered keys keep
    primary-key inserts at the end of the index.
    """
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80 | 0x7 << 76 | ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62 | (rand & ((1 << 62) - 1))
    return uuid.UUID(int=value)
