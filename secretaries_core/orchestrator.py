"""`Orchestrator`: one incoming message → the user's secretary → a reply, with context kept."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from secretaries_core.config import Settings
from secretaries_core.context.base import ContextStore, Message
from secretaries_core.errors import InvalidInput, SecretariesError, UnknownUser
from secretaries_core.instances import (
    PARAM_INSTANCE_MODE,
    InstancePool,
    SecretaryInstance,
    SecretarySnapshot,
)
from secretaries_core.llm.base import ChatTurn
from secretaries_core.llm.providers import build_adapter
from secretaries_core.metrics import Metrics
from secretaries_core.models import Assistant
from secretaries_core.registry import SecretaryRegistry
from secretaries_core.resolution_cache import ResolutionCache, Resolved
from secretaries_core.schemas import Source
from secretaries_core.timeutil import utcnow


@dataclass(frozen=True)
class Reply:
    """The answer to one message, with the secretary that gave it and why it was chosen."""

    text: str
    secretary: str
    secretary_id: uuid.UUID
    source: Source


def snapshot(secretary: Assistant) -> SecretarySnapshot:
    """Copy what the hot path needs out of a database row."""
    return SecretarySnapshot(
        id=secretary.id,
        name=secretary.name,
        model=secretary.model,
        prompt=secretary.prompt,
        params=dict(secretary.params),
        version=secretary.version,
    )


class Orchestrator:
    """Routes messages: resolve (cached) → instance (pooled) → context → model → store the turn.

    `handle` is thread-safe; `ahandle` runs it in a worker thread so an asyncio bot's event
    loop never blocks on the database, the store or the model.
    """

    def __init__(
        self,
        registry: SecretaryRegistry,
        store: ContextStore,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.registry = registry
        self.store = store
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.now = now
        self.cache = ResolutionCache(settings.resolution_ttl_seconds, clock=clock)
        self.pool = InstancePool(
            self._build_instance,
            capacity=settings.pool_capacity,
            idle_seconds=settings.pool_idle_seconds,
            metrics=self.metrics,
            clock=clock,
        )
        registry.subscribe(self._on_change)

    # -- the hot path ---------------------------------------------------------------------

    def handle(self, telegram_id: int, text: str, *, username: str | None = None) -> Reply:
        """Answer `text` from the user, registering them on their first message."""
        try:
            if not text.strip():
                raise InvalidInput("the message is empty")
            if "\x00" in text:
                raise InvalidInput("the message contains a NUL character")
            resolved = self.resolve(telegram_id, username=username)
            secretary = resolved.secretary
            instance = self.instance_for(secretary, telegram_id)
            history = self.store.read(telegram_id, secretary.id)
            started = time.perf_counter()
            answer = instance.reply([ChatTurn(m.role, m.content) for m in history], text)
            self.metrics.model_latency.labels(secretary=secretary.name).observe(
                time.perf_counter() - started
            )
            # Both halves of the turn in one write, after the model answered: a model
            # failure leaves the context exactly as it was.
            at = self.now()
            self.store.append_many(
                [
                    (telegram_id, secretary.id, Message("user", text, at)),
                    (telegram_id, secretary.id, Message("assistant", answer, self.now())),
                ],
                policy=instance.policy,
            )
        except SecretariesError as exc:
            self.metrics.errors.labels(type=type(exc).__name__).inc()
            raise
        self.metrics.messages.labels(secretary=secretary.name).inc()
        return Reply(answer, secretary.name, secretary.id, resolved.source)

    async def ahandle(self, telegram_id: int, text: str, *, username: str | None = None) -> Reply:
        """`handle` for asyncio bots, run in a worker thread."""
        return await asyncio.to_thread(self.handle, telegram_id, text, username=username)

    # -- steps ----------------------------------------------------------------------------

    def resolve(self, telegram_id: int, *, username: str | None = None) -> Resolved:
        """The user's secretary from the cache, else from the database (registering them)."""
        cached = self.cache.get(telegram_id)
        if cached is not None:
            # One counter on the hot path: hits = resolutions_total - resolution_cache_misses.
            self.metrics.by_source[cached.source].inc()
            return cached
        self.metrics.resolution_cache_misses.inc()
        try:
            found = self.registry.resolve(telegram_id)
        except UnknownUser:
            self.registry.add_user(telegram_id, username)
            found = self.registry.resolve(telegram_id)
        resolved = Resolved(snapshot(found.secretary), found.source)
        self.cache.put(telegram_id, resolved)
        self.metrics.by_source[resolved.source].inc()
        return resolved

    def instance_for(self, secretary: SecretarySnapshot, telegram_id: int) -> SecretaryInstance:
        """The pooled instance: one per secretary version (shared) or per user too (per-user)."""
        mode = str(secretary.params.get(PARAM_INSTANCE_MODE) or self.settings.instance_mode)
        if mode not in ("shared", "per-user"):
            raise InvalidInput(
                f"secretary {secretary.name!r} has an unknown instance_mode {mode!r}"
            )
        return self.pool.get(secretary, telegram_id if mode == "per-user" else None)

    def _build_instance(
        self, secretary: SecretarySnapshot, user_id: int | None
    ) -> SecretaryInstance:
        return SecretaryInstance(
            secretary=secretary,
            adapter=build_adapter(secretary.model, self.settings),
            policy=self.settings.context_policy.for_secretary(secretary.params),
            user_id=user_id,
        )

    def _on_change(self, event: str, secretary_id: uuid.UUID | None) -> None:
        # Any committed change of links or of the catalog: re-resolve on the next message.
        self.cache.invalidate()
        if event == "deactivated" and secretary_id is not None:
            self.pool.evict_secretary(secretary_id)

    def metrics_text(self) -> bytes:
        """Prometheus exposition of this orchestrator's metrics."""
        self.pool.sweep()
        return self.metrics.exposition()

    def close(self) -> None:
        """Close every pooled instance."""
        self.pool.close()
