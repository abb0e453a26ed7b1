"""Which users a rollout gives the candidate: a stable hash, no database, no imports."""

from __future__ import annotations

import hashlib
import uuid


def in_rollout(
    telegram_id: int, secretary_id: uuid.UUID, rollout_id: uuid.UUID, percent: int
) -> bool:
    """True when this user gets the candidate at `percent` (stable per user and rollout)."""
    digest = hashlib.sha256(f"{telegram_id}:{secretary_id}:{rollout_id}".encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") % 10_000
    return bucket < percent * 100
