"""Stage "resolve": the user's secretary, from a short-TTL cache or the database.

An unknown user is registered on their first message. Registry change notifications
invalidate the cache in this process; other processes' changes show within the TTL.
"""

from __future__ import annotations

import uuid

from secretaries_core.catalog.serving import SecretaryFacts, ServingCatalog
from secretaries_core.conversation.instances import InstancePool, SecretarySnapshot
from secretaries_core.conversation.resolution_cache import ResolutionCache, Resolved
from secretaries_core.errors import UnknownUser
from secretaries_core.plumbing.hops import Hops
from secretaries_core.plumbing.metrics import Metrics
from secretaries_core.usage import Quotas


def snapshot(secretary: SecretaryFacts) -> SecretarySnapshot:
    """Copy what the hot path needs out of a database row."""
    return SecretarySnapshot(
        id=secretary.id,
        name=secretary.name,
        model=secretary.model,
        prompt=secretary.prompt,
        params=dict(secretary.params),
        version=secretary.version,
    )


class Resolver:
    """Telegram id → `Resolved`, cached; registers unknown users."""

    def __init__(
        self,
        registry: ServingCatalog,
        quotas: Quotas,
        cache: ResolutionCache,
        hops: Hops,
        metrics: Metrics,
    ) -> None:
        self.registry = registry
        self.quotas = quotas
        self.cache = cache
        self.hops = hops
        self.metrics = metrics

    def resolve(self, telegram_id: int, *, username: str | None = None) -> Resolved:
        """The user's secretary from the cache, else from the database (registering them)."""
        cached = self._cached(telegram_id)
        if cached is not None:
            return cached
        return self._remember(telegram_id, *self.lookup(telegram_id, username))

    async def aresolve(self, telegram_id: int, *, username: str | None = None) -> Resolved:
        """`resolve` for async callers: a cache hit costs no thread, a miss one short hop."""
        cached = self._cached(telegram_id)
        if cached is not None:
            return cached
        found = await self.hops.run(self.lookup, telegram_id, username)
        return self._remember(telegram_id, *found)

    def _cached(self, telegram_id: int) -> Resolved | None:
        cached = self.cache.get(telegram_id)
        if cached is not None:
            # One counter on the hot path: hits = resolutions_total - resolution_cache_misses.
            self.metrics.by_source[cached.source].inc()
        else:
            self.metrics.resolution_cache_misses.inc()
        return cached

    def lookup(self, telegram_id: int, username: str | None) -> tuple[Resolved, int]:
        """Read the resolution from the database: (value, the cache ticket taken before)."""
        # The cache ticket is taken before each read: an invalidation after it wins.
        ticket = self.cache.ticket()
        try:
            found, served = self.registry.resolve_served(telegram_id)
        except UnknownUser:
            self.registry.add_user(telegram_id, username)
            ticket = self.cache.ticket()
            found, served = self.registry.resolve_served(telegram_id)
        limits = self.quotas.overrides(telegram_id)
        # Stage "choose the version": a pin, else a running rollout's side, else live.
        secretary = SecretarySnapshot(
            id=found.secretary.id,
            name=found.secretary.name,
            model=served.model,
            prompt=served.prompt,
            params=dict(served.params),
            version=served.version,
        )
        resolved = Resolved(
            secretary, found.source, limits, version_source=served.source, rollout=served.rollout
        )
        return resolved, ticket

    def _remember(self, telegram_id: int, resolved: Resolved, ticket: int) -> Resolved:
        self.cache.put(telegram_id, resolved, ticket)
        self.metrics.by_source[resolved.source].inc()
        return resolved

    def on_change(
        self,
        pool: InstancePool,
        event: str,
        secretary_id: uuid.UUID | None,
        telegram_id: int | None,
    ) -> None:
        """A registry change: drop what it made stale (one user, or everyone)."""
        if event in ("user", "link") and telegram_id is not None:
            self.cache.invalidate(telegram_id)
        else:
            self.cache.invalidate()
        if event == "deactivated" and secretary_id is not None:
            pool.evict_secretary(secretary_id)
