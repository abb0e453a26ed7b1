"""`Orchestrator`: the facade of the message path — it wires the stages and owns lifecycle.

One asynchronous path serves every entry point (conversation/path.py, stage by stage):
`ahandle` and `astream` run it on the caller's event loop; `handle` runs it on a private
loop thread for synchronous callers.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from secretaries_core.catalog.serving import ServingCatalog
from secretaries_core.catalog.version_counts import VersionCounts
from secretaries_core.config import Settings
from secretaries_core.context.base import ContextStore
from secretaries_core.conversation.admission import Admission
from secretaries_core.conversation.asking import Asker
from secretaries_core.conversation.delegation import Delegator
from secretaries_core.conversation.fitting import Budgeter
from secretaries_core.conversation.instances import (
    InstancePool,
    SecretaryInstance,
    SecretarySnapshot,
)
from secretaries_core.conversation.ordering import Policy, UserGate
from secretaries_core.conversation.path import PARAM_DOUBLE_TEXTING, MessagePath
from secretaries_core.conversation.recording import UsageRecorder
from secretaries_core.conversation.resolution import Resolver, snapshot
from secretaries_core.conversation.resolution_cache import ResolutionCache, Resolved
from secretaries_core.conversation.summarizing import Summarizer
from secretaries_core.conversation.tokens import TokenCounter
from secretaries_core.conversation.tooling import ToolBox, ToolLoop, ToolRunner
from secretaries_core.conversation.turn import IDEMPOTENCY_KEY, Reply, ReplyStream
from secretaries_core.errors import InvalidInput
from secretaries_core.evals.canary import CanaryJudge
from secretaries_core.llm.base import ModelAdapter
from secretaries_core.llm.fallback import (
    PARAM_CONTEXT_FALLBACK,
    CircuitBreaker,
    FallbackAdapter,
    Link,
    fallback_models,
)
from secretaries_core.llm.openai_client import OpenAIClients
from secretaries_core.llm.providers import ProviderClients, build_adapter
from secretaries_core.llm.traced import TracedAdapter
from secretaries_core.plumbing import tracing
from secretaries_core.plumbing.hops import Hops
from secretaries_core.plumbing.loops import SyncRunner
from secretaries_core.plumbing.metrics import Metrics
from secretaries_core.plumbing.timeutil import utcnow
from secretaries_core.tools.approval import Approver
from secretaries_core.tools.calling import ToolCaller
from secretaries_core.tools.ledger import ToolLedger
from secretaries_core.tools.registry import ToolRegistry
from secretaries_core.usage import Limits, Quotas, UsageBook
from secretaries_core.usage.writer import UsageWriter

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from secretaries_core.catalog.registry import SecretaryRegistry

__all__ = [
    "IDEMPOTENCY_KEY",
    "PARAM_DOUBLE_TEXTING",
    "Orchestrator",
    "Reply",
    "ReplyStream",
    "snapshot",
]
T = TypeVar("T")


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable


class Orchestrator:
    """Routes messages: resolve (cached) → instance (pooled) → context → model → store the turn.

    Safe to share between threads and event loops. Build it with `from_settings()` (it then
    owns and closes the database and the store) or from parts you own.
    """

    def __init__(
        self,
        registry: ServingCatalog,
        store: ContextStore,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utcnow,
        model_clients: OpenAIClients | None = None,
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
        self.gate = UserGate()
        self.tokens = TokenCounter(tokenizer=settings.tokenizer)
        self.usage = UsageWriter(UsageBook(registry.engine), on_error=self._usage_failed)
        self.quotas = Quotas(registry.engine)
        self.model_clients = model_clients or OpenAIClients(
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key,
            timeout=settings.model_timeout_seconds,
            max_retries=settings.model_max_retries,
            max_connections=settings.model_max_connections,
        )
        self.providers = ProviderClients(self.model_clients, registry.provider)
        self.breaker = CircuitBreaker(settings.circuit_failures, settings.circuit_cooldown_seconds)
        # Registry lookups on a cache miss and a blocking store's calls: millisecond SQL
        # calls, run off the event loop in one pool of SECRETARIES_DB_THREADS.
        self._hops = Hops(settings.db_threads, name="secretaries-db")
        store.use_hops(self._hops)
        self.resolver = Resolver(registry, self.quotas, self.cache, self._hops, self.metrics)
        self.versions = VersionCounts(registry, on_rollback=self._rolled_back)
        budget = Budgeter(self.tokens, settings)
        recorder = UsageRecorder(self.usage, self.tokens, self.metrics, self._now)
        self.summarizer = Summarizer(
            store, recorder, self.providers, settings, self.metrics, self._now
        )
        self.tool_caller = ToolCaller(settings.tool_result_chars)
        self.toolbox = ToolBox(ToolRegistry(registry.engine), self.tool_caller, self._hops.run)
        tool_runner = ToolRunner(
            self.tool_caller,
            ToolLedger(store),
            self.quotas,
            self.metrics,
            self._hops.run,
            settings.tool_calls_per_day,
            self._now,
        )
        tool_loop = ToolLoop(self.toolbox, tool_runner)
        self.path = MessagePath(
            registry=registry,
            store=store,
            settings=settings,
            metrics=self.metrics,
            resolver=self.resolver,
            pool=self.pool,
            gate=self.gate,
            budget=budget,
            admission=Admission(self.quotas, settings, self._hops, self._now),
            asker=Asker(budget, settings, self.metrics, tool_loop),
            recorder=recorder,
            summarizer=self.summarizer,
            counts=self.versions,
            now=self._now,
            canary=CanaryJudge(
                registry.running_rollout,
                self._hops.run,
                self.versions,
                self._judge_adapter,
                settings.model_timeout_seconds,
            ),
        )
        tool_runner.delegate = Delegator(self.path)  # assistants asked as tools
        self._sync = SyncRunner()
        self._owned_engine: Engine | None = None
        self._closed = False
        registry.subscribe(self._on_change)

    def _now(self) -> datetime:
        # Through the attribute, so a test (or a caller) replacing `now` is seen by stages.
        return self.now()

    @classmethod
    def from_settings(
        cls, settings: Settings | None = None, *, serving_only: bool = False
    ) -> Orchestrator:
        """Open the database, the context store and the model clients that `settings` name.

        `settings` defaults to `Settings.load()` (the environment). The embedded SQLite
        database is created or upgraded; any other database must be at the latest schema.
        `registry` is the whole `SecretaryRegistry`, or with `serving_only` the message
        path's `ServingCatalog` alone (no ORM: a one-shot command starts faster).
        """
        from secretaries_core.context.factory import open_context_store
        from secretaries_core.plumbing.schema import open_database

        settings = settings or Settings.load()
        engine = open_database(settings)
        try:
            store = open_context_store(
                settings.context_url,
                policy=settings.context_policy,
                engine=None if settings.context_url else engine,
                prefix=settings.redis_prefix,
                remember=settings.redis_remember_contexts,
            )
        except BaseException:
            engine.dispose()
            raise
        catalog: ServingCatalog
        if serving_only:
            catalog = ServingCatalog(engine)
        else:
            from secretaries_core.catalog.registry import SecretaryRegistry

            catalog = SecretaryRegistry(engine)
        orchestrator = cls(catalog, store, settings)
        orchestrator._owned_engine = engine
        return orchestrator

    # -- entry points ---------------------------------------------------------------------

    def handle(self, telegram_id: int, text: str, *, username: str | None = None) -> Reply:
        """Answer `text` from the user (registering them on their first message); blocking."""
        return self._sync.run(self.ahandle(telegram_id, text, username=username))

    def run_sync(self, awaitable: Awaitable[T]) -> T:
        """Await `awaitable` from synchronous code (the loop `handle` uses in this thread)."""
        return self._sync.run(_awaited(awaitable))

    async def ahandle(
        self,
        telegram_id: int,
        text: str,
        *,
        username: str | None = None,
        idempotency_key: str | None = None,
        on_piece: Callable[[str], None] | None = None,
        redelivered: bool = False,
        began: float | None = None,
        on_tool: Callable[[str, str], None] | None = None,
        approver: Approver | None = None,
    ) -> Reply:
        """Answer `text` from the user without holding a thread while the model works.

        `idempotency_key` (a queued update's id) is stored with the user's message; a
        message whose key is already stored gets its stored answer, without the model.
        `on_piece`, when given, is called with each piece as the model streams it (a
        worker shows them live); the reply is the stored turn either way. `redelivered`
        (a queued update delivered again): its stored answer is looked for in every
        context of the user, so one stored before a switch of secretary is found.
        `began` (epoch seconds, default now): when the message arrived; if its user is
        erased or the conversation cleared after that, nothing of it is stored and
        `Fenced` is raised (context/fences.py). `on_tool(function, state)` hears of each
        tool call starting and ending (`started`, `done`, `failed`). `approver` asks the
        user to approve each call of a `--confirm` tool (tools/approval.py; without one
        those calls are declined).
        """
        return await self.path.handle(
            telegram_id,
            text,
            username,
            idempotency_key,
            on_piece,
            everywhere=redelivered,
            began=began,
            on_tool=on_tool,
            approver=approver,
        )

    async def double_texting(self, telegram_id: int) -> Policy:
        """The double-texting policy of the user's secretary (its param, else the setting)."""
        resolved = await self.aresolve(telegram_id)
        return self.path.policy(resolved.secretary)

    def astream(self, telegram_id: int, text: str, *, username: str | None = None) -> ReplyStream:
        """Yield the reply in pieces as the model produces them; store the turn at the end.

        A stream that fails, or that the caller stops early, stores nothing. Once it is
        exhausted, the returned iterator's `reply` holds the stored `Reply`.
        """
        stream = ReplyStream()
        stream._pieces = self.path.stream(telegram_id, text, username, stream)
        return stream

    async def answered(self, telegram_id: int, key: str) -> Reply | None:
        """The stored answer to the message stored with `key`, if that turn was stored."""
        return await self.path.answered(telegram_id, key)

    # -- what callers look up -------------------------------------------------------------

    @property
    def admin(self) -> SecretaryRegistry:
        """The whole registry, for front desks and the bot (pick, assign, remember replies)."""
        from secretaries_core.catalog.registry import SecretaryRegistry

        if not isinstance(self.registry, SecretaryRegistry):
            # A programming error: the serving catalog was chosen for a one-shot command.
            raise InvalidInput("this orchestrator was built with serving_only: no registry")
        return self.registry

    @property
    def hops(self) -> Hops:
        """The bounded thread pool this orchestrator runs its SQL calls on."""
        return self._hops

    def resolve(self, telegram_id: int, *, username: str | None = None) -> Resolved:
        """The user's secretary from the cache, else from the database (registering them)."""
        return self.resolver.resolve(telegram_id, username=username)

    async def aresolve(self, telegram_id: int, *, username: str | None = None) -> Resolved:
        """`resolve` for async callers: a cache hit costs no thread, a miss one short hop."""
        return await self.resolver.aresolve(telegram_id, username=username)

    def _lookup(self, telegram_id: int, username: str | None) -> tuple[Resolved, int]:
        return self.resolver.lookup(telegram_id, username)

    def limits_for(self, resolved: Resolved) -> Limits:
        """The user's daily limits: their overrides, else the secretary's, else the settings."""
        return self.path.admission.limits_for(resolved)

    def instance_for(self, secretary: SecretarySnapshot, telegram_id: int) -> SecretaryInstance:
        """The pooled instance: one per secretary version (shared) or per user too (per-user)."""
        return self.path.instance_for(secretary, telegram_id)

    def _build_instance(
        self, secretary: SecretarySnapshot, user_id: int | None
    ) -> SecretaryInstance:
        return SecretaryInstance(
            secretary=secretary,
            adapter=self.adapter_for(secretary),
            policy=self.settings.context_policy.for_secretary(secretary.params),
            user_id=user_id,
        )

    def _judge_adapter(self, model: str) -> ModelAdapter:
        return self.adapter_for(SecretarySnapshot(uuid.UUID(int=0), "judge", model, "", {}, 0))

    def adapter_for(self, secretary: SecretarySnapshot) -> ModelAdapter:
        """The secretary's model, or its fallback chain when it has one."""
        chain = [secretary.model, *fallback_models(dict(secretary.params))]
        extra = secretary.params.get(PARAM_CONTEXT_FALLBACK)
        traced = tracing.tracer() is not None

        def build(model: str) -> ModelAdapter:
            adapter = build_adapter(model, self.providers)
            # Each model of a chain its own `chat` span: every fallback attempt is seen.
            return TracedAdapter(adapter, model) if traced else adapter

        if len(chain) == 1 and not extra:
            return build(secretary.model)
        name = secretary.name

        def fell_back(source: str, target: str) -> None:
            self.metrics.fallbacks.labels(secretary=name, **{"from": source, "to": target}).inc()

        return FallbackAdapter(
            [Link(m, build(m)) for m in chain],
            self.breaker,
            deadline=self.settings.model_timeout_seconds,
            on_fallback=fell_back,
            context_fallback=(Link(str(extra), build(str(extra))) if extra else None),
        )

    def _on_change(
        self, event: str, secretary_id: uuid.UUID | None, telegram_id: int | None
    ) -> None:
        self.toolbox.forget()  # a version's tools may have changed
        if event == "provider":
            # A provider was added, changed or removed: new clients, new instances.
            self.providers.forget_all()
            self.pool.evict_all()
            return
        self.resolver.on_change(self.pool, event, secretary_id, telegram_id)

    def _usage_failed(self, exc: Exception) -> None:
        # The replies were good and already paid for: a failed usage write is counted and
        # retried, never turned into a failed message.
        self.metrics.errors.labels(type="UsageNotWritten").inc()

    def flush_usage(self) -> None:
        """Write the usage of every answered message now (reports read the database)."""
        self.usage.flush()
        self.versions.flush()

    def _rolled_back(self, secretary: str, reason: str) -> None:
        self.metrics.rollouts.labels(secretary=secretary, outcome="rolled_back").inc()
        self.cache.invalidate()  # this process: everyone back on live at once

    async def feedback(
        self,
        telegram_id: int,
        value: int,
        *,
        update_id: str | int | None = None,
        message_id: int | None = None,
    ) -> int:
        """Count a like (1) or dislike (-1) for the version that wrote a reply; its number.

        The reply is found by the update it answered (its turn in the context) or by the
        Telegram message id the bot sent it as. Unknown replies are `NotFound`.
        """
        from secretaries_core.errors import NotFound

        if value not in (1, -1):
            raise InvalidInput(f"feedback is 1 (like) or -1 (dislike), got {value}")
        if (update_id is None) == (message_id is None):
            raise InvalidInput("give exactly one of update_id and message_id")
        found: tuple[uuid.UUID, int] | None
        if message_id is not None:
            found = await self._hops.run(self.registry.reply_version, telegram_id, message_id)
        else:
            reply = await self.path.answered(telegram_id, str(update_id))
            found = (reply.secretary_id, reply.version) if reply is not None else None
        if found is None:
            raise NotFound(f"no reply to user {telegram_id} known by that id")
        secretary_id, version = found
        rollout = await self._hops.run(self.registry.rollout_of, secretary_id, version)
        self.versions.add(
            secretary_id,
            version,
            rollout,
            likes=1 if value == 1 else 0,
            dislikes=1 if value == -1 else 0,
        )
        await self._hops.run(self.versions.flush)
        return version

    def metrics_text(self) -> bytes:
        """Prometheus exposition of this orchestrator's metrics."""
        self.pool.sweep()
        self.metrics.context_reads_remembered.set(self.store.reads_from_memory())
        return self.metrics.exposition()

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Release model clients, pooled instances, threads and what `from_settings` opened."""
        if self._closed:
            return
        self._closed = True
        try:
            self._sync.close(self._aclose_loop_resources)
        finally:
            self.providers.close()
        self.pool.close()
        self.usage.close()
        self.versions.close()
        self._hops.close()
        if self._owned_engine is not None:
            self.store.close()
            self._owned_engine.dispose()

    async def aclose(self) -> None:
        """`close` from async code: this loop's clients first, then the rest off the loop."""
        await self._aclose_loop_resources()
        await asyncio.to_thread(self.close)

    async def drain(self) -> None:
        """Wait (up to the model deadline) for summaries and canary judgements started on
        this event loop."""
        await self.summarizer.drain()
        if self.path.canary is not None:
            await self.path.canary.drain()

    async def _aclose_loop_resources(self) -> None:
        # Summaries still being written on this loop get their deadline to finish.
        await self.drain()
        await self.tool_caller.aclose()
        await self.providers.aclose()
        await self.store.aclose()

    def __enter__(self) -> Orchestrator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Orchestrator:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()
