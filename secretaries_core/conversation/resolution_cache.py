"""A short-TTL cache of user → secretary resolution, so the hot path skips the database."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from secretaries_core.catalog.serving import Source
from secretaries_core.conversation.instances import SecretarySnapshot
from secretaries_core.usage.quotas import Limits


@dataclass(frozen=True)
class Resolved:
    """A cached resolution: the secretary snapshot, where it came from, the user's limits."""

    secretary: SecretarySnapshot
    source: Source
    limits: Limits = field(default_factory=lambda: Limits())
    # Which version serves the user and why (live, rollout, pinned); the running rollout of
    # that secretary, if any, whose counts this user's messages add to.
    version_source: str = "live"
    rollout: uuid.UUID | None = None


class ResolutionCache:
    """Telegram id → `Resolved`, each entry valid for `ttl` seconds.

    In this process it is invalidated by the registry's change notifications: one user's
    entry when only that user changed, every entry when the catalog changed. Changes made
    by other processes show within `ttl`.

    A lookup takes a `ticket()` before reading the database and hands it to `put`: if an
    invalidation of that user (or of everyone) happened in between, the possibly stale
    value is dropped instead of cached, so a read that raced an `assign` can never put the
    old link back.
    """

    def __init__(
        self, ttl: float, *, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._entries: dict[int, tuple[float, Resolved]] = {}
        self._generation = 0
        # Generation of the last full clear, and of the last per-user invalidation.
        self._cleared_at = 0
        self._user_invalidated: dict[int, int] = {}
        self._lock = threading.Lock()

    def get(self, telegram_id: int) -> Resolved | None:
        """The cached resolution, or None when absent or older than the TTL."""
        found = self._entries.get(telegram_id)
        if found is None or self.clock() >= found[0]:
            return None
        return found[1]

    def ticket(self) -> int:
        """The generation to hand to `put` for a lookup starting now."""
        return self._generation

    def put(self, telegram_id: int, resolved: Resolved, ticket: int | None = None) -> bool:
        """Remember a resolution for `ttl` seconds unless it was invalidated since `ticket`."""
        if self.ttl <= 0:
            return False
        with self._lock:
            if ticket is not None and (
                self._cleared_at > ticket or self._user_invalidated.get(telegram_id, -1) > ticket
            ):
                return False
            if len(self._entries) >= self.max_entries:
                # Bounded memory: start over rather than track recency on the hot path.
                self._entries.clear()
            self._entries[telegram_id] = (self.clock() + self.ttl, resolved)
            return True

    def invalidate(self, telegram_id: int | None = None) -> None:
        """Forget one user's entry, or every entry."""
        with self._lock:
            self._generation += 1
            if telegram_id is None or len(self._user_invalidated) >= self.max_entries:
                self._entries.clear()
                self._user_invalidated.clear()
                self._cleared_at = self._generation
            else:
                self._entries.pop(telegram_id, None)
                self._user_invalidated[telegram_id] = self._generation
