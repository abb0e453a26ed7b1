"""`Orchestrator`: one incoming message → the user's secretary → a reply, with context kept.

One asynchronous path serves every entry point: `ahandle` and `astream` run it on the
caller's event loop; `handle` runs it on a private loop thread for synchronous callers.
Per message: check the input → resolve (cached) → wait for the user's turn → read the
context → fit it to the token budget → admit it under the daily quotas → ask the model
(under the deadline) → store the whole turn in one write and its usage in one upsert →
fold turns that fell out of the budget into the running summary, in the background.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast

from secretaries_core import summaries
from secretaries_core.budget import Fit, context_limit, fit_history, group_turns, reply_room
from secretaries_core.config import DOUBLE_TEXTING, Settings
from secretaries_core.context.base import ContextStore, Message
from secretaries_core.errors import (
    Interrupted,
    InvalidInput,
    ModelUnavailable,
    SecretariesError,
    UnknownUser,
)
from secretaries_core.hops import Hops
from secretaries_core.instances import (
    PARAM_INSTANCE_MODE,
    InstancePool,
    SecretaryInstance,
    SecretarySnapshot,
    with_summary,
)
from secretaries_core.llm.base import CallUsage, ChatRequest, ChatTurn, ModelAdapter
from secretaries_core.llm.openai_client import ContextTooLong, OpenAIClients
from secretaries_core.llm.providers import build_adapter
from secretaries_core.loops import SyncRunner
from secretaries_core.metrics import Metrics
from secretaries_core.models import Assistant
from secretaries_core.ordering import Policy, Ticket, UserGate
from secretaries_core.registry import SecretaryRegistry
from secretaries_core.resolution_cache import ResolutionCache, Resolved
from secretaries_core.schemas import Source
from secretaries_core.text import check_incoming, storable
from secretaries_core.timeutil import utcnow
from secretaries_core.tokens import TokenCounter
from secretaries_core.usage import Limits, Quotas, Reservation, UsageBook, UsageEntry
from secretaries_core.usage.quotas import day_of
from secretaries_core.usage.writer import UsageWriter

if TYPE_CHECKING:
    from sqlalchemy import Engine

log = logging.getLogger(__name__)
T = TypeVar("T")
PARAM_DOUBLE_TEXTING = "double_texting"
IDEMPOTENCY_KEY = "update_id"  # metadata key of a queued message's id on its stored text


@dataclass(frozen=True)
class Reply:
    """The answer to one message, with the secretary that gave it and why it was chosen."""

    text: str
    secretary: str
    secretary_id: uuid.UUID
    source: Source


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable


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


def _turn_id() -> str:
    """A fresh id for a turn that has no update id (12 hex digits: unique per context)."""
    return uuid.uuid4().hex[:12]


def _stored_answer(resolved: Resolved, history: list[Message], key: str) -> Reply | None:
    """The stored answer to the message stored with idempotency `key`, if any."""
    for i, message in enumerate(history):
        if (message.metadata or {}).get(IDEMPOTENCY_KEY) == key:
            for later in history[i + 1 :]:
                if later.role == "assistant":
                    secretary = resolved.secretary
                    return Reply(later.content, secretary.name, secretary.id, resolved.source)
    return None


class ReplyStream:
    """The pieces of one streamed reply (an async iterator); `reply` once it has ended."""

    def __init__(self) -> None:
        self.reply: Reply | None = None
        self._pieces: AsyncGenerator[str, None] | None = None

    def __aiter__(self) -> ReplyStream:
        return self

    async def __anext__(self) -> str:
        assert self._pieces is not None
        return await anext(self._pieces)

    async def aclose(self) -> None:
        """Stop early: the model call is cancelled and nothing is stored."""
        if self._pieces is not None:
            await self._pieces.aclose()


@dataclass
class _Turn:
    """One message between taking its user's turn and storing its answer."""

    telegram_id: int
    text: str
    resolved: Resolved
    instance: SecretaryInstance
    ticket: Ticket
    history: list[Message]
    summary: summaries.RunningSummary | None = None
    fit: Fit | None = None
    reservation: Reservation | None = None
    usage: CallUsage | None = None
    recorded: bool = False
    key: str | None = None

    @property
    def texts(self) -> list[str]:
        """The user messages this turn answers: superseded earlier ones, then its own."""
        return [*self.ticket.carried, self.text]


class Orchestrator:
    """Routes messages: resolve (cached) → instance (pooled) → context → model → store the turn.

    Safe to share between threads and event loops. Build it with `from_settings()` (it then
    owns and closes the database and the store) or from parts you own.
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
        # Summaries being written, so close() can let them finish and one context never
        # has two at once.
        self._background: set[asyncio.Task[None]] = set()
        self._summarizing: set[tuple[int, uuid.UUID]] = set()
        # (secretary, model) -> one less than the smallest prompt (our count) the provider
        # refused as too long: later budgets stay below it.
        self._refused_at: dict[tuple[uuid.UUID, str], int] = {}
        self.model_clients = model_clients or OpenAIClients(
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key,
            timeout=settings.model_timeout_seconds,
            max_retries=settings.model_max_retries,
            max_connections=settings.model_max_connections,
        )
        # Registry lookups on a cache miss and a blocking store's calls: millisecond SQL
        # calls, run off the event loop in one pool of SECRETARIES_DB_THREADS.
        self._hops = Hops(settings.db_threads, name="secretaries-db")
        store.use_hops(self._hops)
        self._sync = SyncRunner()
        self._owned_engine: Engine | None = None
        self._closed = False
        registry.subscribe(self._on_change)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Orchestrator:
        """Open the database, the context store and the model clients that `settings` name.

        `settings` defaults to `Settings.load()` (the environment). The embedded SQLite
        database is created or upgraded; any other database must be at the latest schema.
        """
        from secretaries_core.context.factory import open_context_store
        from secretaries_core.schema import open_database

        settings = settings or Settings.load()
        engine = open_database(settings)
        try:
            store = open_context_store(
                settings.context_url,
                policy=settings.context_policy,
                engine=None if settings.context_url else engine,
                prefix=settings.redis_prefix,
            )
        except BaseException:
            engine.dispose()
            raise
        orchestrator = cls(SecretaryRegistry(engine), store, settings)
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
    ) -> Reply:
        """Answer `text` from the user without holding a thread while the model works.

        `idempotency_key` (a queued update's id) is stored with the user's message, so a
        redelivered message can be recognised as answered (`answered`).
        """
        with self._our_errors():
            turn = await self._begin(telegram_id, text, username)
            turn.key = idempotency_key
            try:
                if idempotency_key is not None:
                    # Read with the user's turn held: if this update's answer is stored
                    # (an earlier delivery got that far), it is never asked again.
                    stored = _stored_answer(turn.resolved, turn.history, idempotency_key)
                    if stored is not None:
                        return stored
                await self._admit(turn)
                answer = await self._ask(turn, None)
                return await self._finish(turn, answer)
            except BaseException:
                await self._give_back(turn)
                raise
            finally:
                self.gate.release(turn.ticket)

    def astream(self, telegram_id: int, text: str, *, username: str | None = None) -> ReplyStream:
        """Yield the reply in pieces as the model produces them; store the turn at the end.

        A stream that fails, or that the caller stops early, stores nothing. Once it is
        exhausted, the returned iterator's `reply` holds the stored `Reply`.
        """
        stream = ReplyStream()
        stream._pieces = self._stream(telegram_id, text, username, stream)
        return stream

    async def _stream(
        self, telegram_id: int, text: str, username: str | None, out: ReplyStream
    ) -> AsyncGenerator[str, None]:
        with self._our_errors():
            turn = await self._begin(telegram_id, text, username)
            try:
                await self._admit(turn)
                pieces: asyncio.Queue[str | None] = asyncio.Queue()
                task = asyncio.ensure_future(self._ask(turn, pieces.put_nowait))
                task.add_done_callback(lambda _done: pieces.put_nowait(None))
                shown: list[str] = []
                try:
                    while (piece := await pieces.get()) is not None:
                        shown.append(piece)
                        yield piece
                    answer = await task
                finally:
                    abandoned = not task.done()
                    if abandoned:
                        task.cancel()
                    if abandoned and shown and turn.fit is not None and not turn.recorded:
                        # Abandoned by the caller: the model worked and is paid for, so
                        # what it produced counts in usage (estimated), stored or not.
                        self._record(turn, "".join(shown))
                out.reply = await self._finish(turn, answer)
            except BaseException:
                await self._give_back(turn)
                raise
            finally:
                self.gate.release(turn.ticket)

    # -- the one path ---------------------------------------------------------------------

    async def _begin(self, telegram_id: int, text: str, username: str | None) -> _Turn:
        name = check_incoming(
            telegram_id, text, username, max_chars=self.settings.max_message_chars
        )
        # The place in line is taken before the first await: arrival order is call order.
        ticket = self.gate.enter(telegram_id, text)
        try:
            resolved = await self.aresolve(telegram_id, username=name)
            instance = self.instance_for(resolved.secretary, telegram_id)
            await self.gate.wait(ticket, self._policy(resolved.secretary))
            # Read after taking the turn, so the model sees every earlier answered message.
            # It also proves the store is reachable before the model is paid for.
            stored = await self.store.aread(telegram_id, resolved.secretary.id)
        except BaseException:
            self.gate.release(ticket)
            raise
        summary, history = summaries.split(stored)
        return _Turn(telegram_id, text, resolved, instance, ticket, history, summary)

    def _fit(self, turn: _Turn, limit: int | None = None) -> Fit:
        """The newest whole turns that fit the secretary's token budget (or `limit`)."""
        secretary = turn.resolved.secretary
        if limit is None:
            limit = context_limit(secretary.params, self.settings.max_context_tokens)
            limit = min(limit, self._refused_at.get((secretary.id, secretary.model), limit))
        return fit_history(
            group_turns(turn.history),
            counter=self.tokens,
            model=secretary.model,
            system=with_summary(secretary.prompt, turn.summary.text if turn.summary else None),
            texts=turn.texts,
            limit=limit,
            reply_tokens=reply_room(secretary.params),
        )

    def limits_for(self, resolved: Resolved) -> Limits:
        """The user's daily limits: their overrides, else the secretary's, else the settings."""
        return resolved.limits.over(Limits.from_params(resolved.secretary.params)).over(
            Limits(self.settings.messages_per_day, self.settings.tokens_per_day)
        )

    async def _admit(self, turn: _Turn) -> None:
        """Fit the context, then count the message against the user's quotas (or refuse it)."""
        turn.fit = self._fit(turn)
        limits = self.limits_for(turn.resolved)
        if limits.limited:
            turn.reservation = await self._hops.run(
                self.quotas.admit,
                turn.telegram_id,
                limits,
                tokens=turn.fit.prompt_tokens,
                now=self.now(),
            )

    async def _give_back(self, turn: _Turn) -> None:
        """A message that got no answer does not count against the quota."""
        reservation, turn.reservation = turn.reservation, None
        if reservation is None or turn.recorded:
            return
        try:
            await self._hops.run(self.quotas.refund, reservation)
        except Exception as exc:  # the message's own error is the one to report
            log.error("could not give back a quota reservation", exc_info=exc)

    async def _ask(self, turn: _Turn, sink: Callable[[str], None] | None) -> str:
        """The model's answer, as a task a newer message may cancel (policy `interrupt`)."""
        if turn.ticket.superseded:
            raise Interrupted("a newer message of the same user took over")
        task = asyncio.ensure_future(self._model(turn, sink))
        turn.ticket.task = task
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if turn.ticket.superseded and not (current and current.cancelling()):
                raise Interrupted("a newer message of the same user took over") from None
            raise
        finally:
            turn.ticket.task = None

    async def _model(self, turn: _Turn, sink: Callable[[str], None] | None) -> str:
        secretary = turn.resolved.secretary
        deadline = self.settings.model_timeout_seconds
        parts: list[str] = []
        started = time.perf_counter()
        try:
            # One deadline for the whole wait, the SDK's retries and a trickling body included.
            async with asyncio.timeout(deadline):
                try:
                    await self._call(turn, parts, sink)
                except ContextTooLong:
                    # Our count said it fits, the provider disagrees. Retry once with half
                    # the tokens, and remember the refused size for this model, so the next
                    # messages are cut below it from the start: a context never stays stuck.
                    assert turn.fit is not None
                    refused = turn.fit.prompt_tokens
                    key = (secretary.id, secretary.model)
                    self._refused_at[key] = min(self._refused_at.get(key, refused), refused - 1)
                    smaller = self._fit(turn, limit=refused // 2)
                    if parts or len(smaller.kept) == len(turn.fit.kept):
                        raise
                    self.metrics.context_retries.labels(secretary=secretary.name).inc()
                    turn.fit = smaller
                    await self._call(turn, parts, sink)
        except TimeoutError:
            raise ModelUnavailable(
                f"{secretary.name}: the model gave no complete reply within {deadline:g}s"
            ) from None
        self.metrics.model_latency.labels(secretary=secretary.name).observe(
            time.perf_counter() - started
        )
        return "".join(parts)

    async def _call(
        self, turn: _Turn, parts: list[str], sink: Callable[[str], None] | None
    ) -> None:
        assert turn.fit is not None
        request = turn.instance.request(
            [ChatTurn(m.role, m.content) for m in turn.fit.history],
            turn.texts,
            summary=turn.summary.text if turn.summary else None,
        )
        turn.usage = CallUsage()
        async for piece in turn.instance.reply(request, stream=sink is not None, usage=turn.usage):
            parts.append(piece)
            if sink is not None:
                sink(piece)

    async def _finish(self, turn: _Turn, answer: str) -> Reply:
        if not self.gate.start_commit(turn.ticket):
            raise Interrupted("a newer message of the same user took over")
        secretary = turn.resolved.secretary
        answer = storable(answer)
        at = self.now()
        # The turn's id (a queued update's id, else a fresh one) goes on this message's own
        # text (the last one): the store writes a turn once, and `answered` finds it.
        meta = {IDEMPOTENCY_KEY: turn.key} if turn.key is not None else {"turn": _turn_id()}
        items = [(turn.telegram_id, secretary.id, Message("user", t, at)) for t in turn.texts]
        tid, sid, last = items[-1]
        items[-1] = (tid, sid, Message(last.role, last.content, last.at, meta))
        items.append((turn.telegram_id, secretary.id, Message("assistant", answer, self.now())))
        # The whole turn in one write, after the model answered: a failed or interrupted
        # call leaves the context exactly as it was. Its usage is recorded first: the
        # tokens were spent whether or not the context write succeeds.
        self._record(turn, answer)
        await self.store.aappend_many(items, policy=turn.instance.policy)
        self.metrics.messages.labels(secretary=secretary.name).inc()
        self._summarize_later(turn)
        return Reply(answer, secretary.name, secretary.id, turn.resolved.source)

    # -- usage and summaries ----------------------------------------------------------------

    def _entry(
        self,
        telegram_id: int,
        secretary: SecretarySnapshot,
        model: str,
        usage: CallUsage | None,
        prompt_estimate: int,
        answer: str,
        *,
        messages: int,
    ) -> UsageEntry:
        reported = usage is not None and usage.reported
        prompt = usage.prompt_tokens if usage is not None and reported else prompt_estimate
        completion = (
            usage.completion_tokens
            if usage is not None and reported
            else self.tokens.count(model, answer)
        )
        assert prompt is not None and completion is not None
        self.metrics.tokens.labels(secretary=secretary.name, model=model, kind="prompt").inc(prompt)
        self.metrics.tokens.labels(secretary=secretary.name, model=model, kind="completion").inc(
            completion
        )
        return UsageEntry(
            telegram_id=telegram_id,
            secretary_id=secretary.id,
            model=model,
            day=day_of(self.now()),
            messages=messages,
            prompt_tokens=prompt,
            completion_tokens=completion,
            estimated=not reported,
        )

    def _record(self, turn: _Turn, answer: str) -> None:
        """Queue the call's usage (and the quota's token correction) for the writer."""
        assert turn.fit is not None
        secretary = turn.resolved.secretary
        entry = self._entry(
            turn.telegram_id,
            secretary,
            secretary.model,
            turn.usage,
            turn.fit.prompt_tokens,
            answer,
            messages=1,
        )
        if turn.reservation is not None:
            # Counted on the day it was admitted, even if it finished after midnight.
            entry = replace(entry, day=turn.reservation.day)
        admitted = turn.reservation.tokens if turn.reservation is not None else None
        turn.recorded = True
        # Summed in memory and written in batches behind the message path (usage/writer.py).
        self.usage.add([entry], admitted)

    def _usage_failed(self, exc: Exception) -> None:
        # The replies were good and already paid for: a failed usage write is counted and
        # retried, never turned into a failed message.
        self.metrics.errors.labels(type="UsageNotWritten").inc()

    def flush_usage(self) -> None:
        """Write the usage of every answered message now (reports read the database)."""
        self.usage.flush()

    def _summarize_later(self, turn: _Turn) -> None:
        secretary = turn.resolved.secretary
        if turn.fit is None or not turn.fit.dropped or not summaries.wanted(secretary.params):
            return
        dropped = [m for t in turn.fit.dropped for m in t]
        fresh = summaries.unsummarized(dropped, turn.summary)
        key = (turn.telegram_id, secretary.id)
        if not fresh or key in self._summarizing:
            return
        self._summarizing.add(key)
        task = asyncio.ensure_future(self._summarize(turn, fresh))
        self._background.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._background.discard(finished)
            self._summarizing.discard(key)

        task.add_done_callback(done)

    async def _summarize(self, turn: _Turn, fresh: list[Message]) -> None:
        """Fold `fresh` into the running summary; on failure keep everything as it was."""
        secretary = turn.resolved.secretary
        model = str(secretary.params.get(summaries.PARAM_SUMMARY_MODEL) or secretary.model)
        request = summaries.request(secretary.name, turn.summary, fresh, secretary.params)
        usage = CallUsage()
        try:
            adapter: ModelAdapter = (
                turn.instance.adapter
                if model == secretary.model
                else build_adapter(model, self.model_clients)
            )
            async with asyncio.timeout(self.settings.model_timeout_seconds):
                pieces = adapter.pieces(request, stream=False, usage=usage)
                text = "".join([piece async for piece in pieces])
            text = storable(text)
            if not text.strip():
                raise ModelUnavailable(f"{model}: an empty summary")
            entry = self._entry(
                turn.telegram_id,
                secretary,
                model,
                usage,
                self._request_tokens(model, request),
                text,
                messages=0,
            )
            await self.store.aappend_many(
                [(turn.telegram_id, secretary.id, summaries.message(text, fresh, self.now()))],
                policy=turn.instance.policy,
            )
            self.usage.add([entry])
            self.metrics.summaries.labels(outcome="ok").inc()
        except (Exception, TimeoutError) as exc:
            # The turns stay in the context; the next overflow tries again.
            self.metrics.summaries.labels(outcome="failed").inc()
            log.warning("summary for %s failed: %s", secretary.name, exc)

    def _request_tokens(self, model: str, request: ChatRequest) -> int:
        return self.tokens.messages(model, [m["content"] for m in request.messages()])

    @contextmanager
    def _our_errors(self) -> Iterator[None]:
        """Count every failure; let only our own errors leave the entry points."""
        try:
            yield
        except SecretariesError as exc:
            self._count(exc)
            raise
        except Exception as exc:
            raise self._count(self._translate(exc)) from exc

    def _count(self, exc: SecretariesError) -> SecretariesError:
        self.metrics.errors.labels(type=type(exc).__name__).inc()
        return exc

    def _translate(self, exc: Exception) -> SecretariesError:
        """Only our own errors leave the library: a driver's failure becomes one of them."""
        from sqlalchemy.exc import DBAPIError

        from secretaries_core.db import unavailable

        if isinstance(exc, DBAPIError):
            return unavailable(self.registry.engine, exc)
        log.error("unexpected failure while answering a message", exc_info=exc)
        return SecretariesError(f"internal error ({type(exc).__name__}); see the log")

    # -- steps ----------------------------------------------------------------------------

    def _policy(self, secretary: SecretarySnapshot) -> Policy:
        value = secretary.params.get(PARAM_DOUBLE_TEXTING) or self.settings.double_texting
        if value not in DOUBLE_TEXTING:
            raise InvalidInput(
                f"secretary {secretary.name!r} has an unknown double_texting {value!r}: "
                f"use one of {', '.join(DOUBLE_TEXTING)}"
            )
        return cast(Policy, value)

    async def answered(self, telegram_id: int, key: str) -> Reply | None:
        """The stored answer to the message stored with `key`, if that turn was stored."""
        with self._our_errors():
            resolved = await self.aresolve(telegram_id)
            history = await self.store.aread(telegram_id, resolved.secretary.id)
            return _stored_answer(resolved, history, key)

    @property
    def hops(self) -> Hops:
        """The bounded thread pool this orchestrator runs its SQL calls on."""
        return self._hops

    def resolve(self, telegram_id: int, *, username: str | None = None) -> Resolved:
        """The user's secretary from the cache, else from the database (registering them)."""
        cached = self._cached(telegram_id)
        if cached is not None:
            return cached
        return self._remember(telegram_id, *self._lookup(telegram_id, username))

    async def aresolve(self, telegram_id: int, *, username: str | None = None) -> Resolved:
        """`resolve` for async callers: a cache hit costs no thread, a miss one short hop."""
        cached = self._cached(telegram_id)
        if cached is not None:
            return cached
        found = await self._hops.run(self._lookup, telegram_id, username)
        return self._remember(telegram_id, *found)

    def _cached(self, telegram_id: int) -> Resolved | None:
        cached = self.cache.get(telegram_id)
        if cached is not None:
            # One counter on the hot path: hits = resolutions_total - resolution_cache_misses.
            self.metrics.by_source[cached.source].inc()
        else:
            self.metrics.resolution_cache_misses.inc()
        return cached

    def _lookup(self, telegram_id: int, username: str | None) -> tuple[Resolved, int]:
        # The cache ticket is taken before each read: an invalidation after it wins.
        ticket = self.cache.ticket()
        try:
            found = self.registry.resolve(telegram_id)
        except UnknownUser:
            self.registry.add_user(telegram_id, username)
            ticket = self.cache.ticket()
            found = self.registry.resolve(telegram_id)
        limits = self.quotas.overrides(telegram_id)
        return Resolved(snapshot(found.secretary), found.source, limits), ticket

    def _remember(self, telegram_id: int, resolved: Resolved, ticket: int) -> Resolved:
        self.cache.put(telegram_id, resolved, ticket)
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
            adapter=build_adapter(secretary.model, self.model_clients),
            policy=self.settings.context_policy.for_secretary(secretary.params),
            user_id=user_id,
        )

    def _on_change(
        self, event: str, secretary_id: uuid.UUID | None, telegram_id: int | None
    ) -> None:
        # One user's registration or link: that user only; anything else: everyone.
        if event in ("user", "link") and telegram_id is not None:
            self.cache.invalidate(telegram_id)
        else:
            self.cache.invalidate()
        if event == "deactivated" and secretary_id is not None:
            self.pool.evict_secretary(secretary_id)

    def metrics_text(self) -> bytes:
        """Prometheus exposition of this orchestrator's metrics."""
        self.pool.sweep()
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
            self.model_clients.close()
        self.pool.close()
        self.usage.close()
        self._hops.close()
        if self._owned_engine is not None:
            self.store.close()
            self._owned_engine.dispose()

    async def aclose(self) -> None:
        """`close` from async code: this loop's clients first, then the rest off the loop."""
        await self._aclose_loop_resources()
        await asyncio.to_thread(self.close)

    async def drain(self) -> None:
        """Wait (up to the model deadline) for summaries started on this event loop."""
        loop = asyncio.get_running_loop()
        mine = [t for t in self._background if t.get_loop() is loop]
        if mine:
            await asyncio.wait(mine, timeout=self.settings.model_timeout_seconds)

    async def _aclose_loop_resources(self) -> None:
        # Summaries still being written on this loop get their deadline to finish.
        await self.drain()
        await self.model_clients.aclose()
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
