"""Which version a user is served besides the live one: a pin, else a rollout's side (a
stable hash per user). Pure: no database, no imports — the registry and the quick reads
(catalog/reads.py) decide the same way."""

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


def chosen_version(
    telegram_id: int,
    secretary_id: uuid.UUID,
    live_version: int,
    marks: tuple[int | None, uuid.UUID | None, int | None, int | None],
) -> tuple[int | None, str]:
    """(the version to look up, or None for the live one; "live" / "pinned" / "rollout").

    `marks` are the user's pin and the secretary's running rollout (id, percent,
    candidate), as one query returns them. A pin wins; a pin to the live version needs no
    lookup; a rollout's candidate is looked up even when it equals the live number.
    """
    pinned, rollout_id, percent, candidate = marks
    if pinned is not None:
        wanted, source = int(pinned), "pinned"
    elif (
        rollout_id is not None
        and percent is not None
        and candidate is not None
        and in_rollout(telegram_id, secretary_id, rollout_id, int(percent))
    ):
        wanted, source = int(candidate), "rollout"
    else:
        return None, "live"
    if wanted == live_version and source != "rollout":
        return None, source
    return wanted, source
