"""The path of one message, read top to bottom: each step is a stage in its own module.

    check (text.py) → resolve (resolution.py) → take the user's turn (ordering.py)
    → read the context → fit (fitting.py) → admit (admission.py) → ask (asking.py)
    → commit (commit.py) → record (recording.py) → summarise, later (summarizing.py)

A queued update (an idempotency key) whose answer is already stored stops after the read:
its stored answer is returned and the model is not asked again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar, cast

from secretaries_core.catalog.serving import ServingCatalog
from secretaries_core.catalog.version_counts import VersionCounts
from secretaries_core.config import DOUBLE_TEXTING, Settings
from secretaries_core.context.base import ContextStore, Message
from secretaries_core.conversation import summaries
from secretaries_core.conversation.admission import Admission
from secretaries_core.conversation.asking import Asker
from secretaries_core.conversation.commit import store_turn
from secretaries_core.conversation.fitting import Budgeter
from secretaries_core.conversation.instances import (
    PARAM_INSTANCE_MODE,
    InstancePool,
    SecretaryInstance,
    SecretarySnapshot,
)
from secretaries_core.conversation.ordering import Policy, Ticket, UserGate
from secretaries_core.conversation.recording import UsageRecorder
from secretaries_core.conversation.resolution import Resolver
from secretaries_core.conversation.resolution_cache import Resolved
from secretaries_core.conversation.summarizing import Summarizer
from secretaries_core.conversation.text import check_incoming, storable
from secretaries_core.conversation.turn import Reply, ReplyStream, Turn, stored_answer
from secretaries_core.errors import Interrupted, InvalidInput, ModelError, SecretariesError
from secretaries_core.plumbing import tracing
from secretaries_core.plumbing.metrics import Metrics
from secretaries_core.tools.approval import AwaitingApproval

log = logging.getLogger(__name__)
T = TypeVar("T")
PARAM_DOUBLE_TEXTING = "double_texting"


MESSAGE_SPAN = "secretaries.message"
MESSAGE_ATTRIBUTES = {"gen_ai.operation.name": "invoke_agent"}


def _describe(span: Any, turn: Turn) -> None:
    """The message span's GenAI attributes, once the secretary and version are known."""
    if span is None:
        return
    resolved = turn.resolved
    secretary = resolved.secretary
    arm = {"rollout": "candidate", "pinned": "pinned"}.get(resolved.version_source, "live")
    tracing.set_attributes(
        span,
        {
            "gen_ai.agent.name": secretary.name,
            "gen_ai.agent.id": str(secretary.id),
            "gen_ai.request.model": secretary.model.partition("/")[2] or secretary.model,
            "secretaries.secretary": secretary.name,
            "secretaries.version": secretary.version,
            "secretaries.rollout_arm": arm,
        },
    )


class MessagePath:
    """The stages wired together; `Orchestrator` is the facade in front of it."""

    def __init__(
        self,
        *,
        registry: ServingCatalog,
        store: ContextStore,
        settings: Settings,
        metrics: Metrics,
        resolver: Resolver,
        pool: InstancePool,
        gate: UserGate,
        budget: Budgeter,
        admission: Admission,
        asker: Asker,
        recorder: UsageRecorder,
        summarizer: Summarizer,
        counts: VersionCounts,
        now: Callable[[], datetime],
        canary: Any = None,
    ) -> None:
        self.registry = registry
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.resolver = resolver
        self.pool = pool
        self.gate = gate
        self.budget = budget
        self.admission = admission
        self.asker = asker
        self.recorder = recorder
        self.summarizer = summarizer
        self.counts = counts
        self.now = now
        # evals/canary.CanaryJudge: judges a sample of a judged rollout's candidate replies.
        self.canary = canary

    # -- the whole path ---------------------------------------------------------------------

    async def handle(
        self,
        telegram_id: int,
        text: str,
        username: str | None,
        key: str | None,
        sink: Callable[[str], None] | None = None,
        *,
        everywhere: bool = False,
        began: float | None = None,
        on_tool: Callable[[str, str], None] | None = None,
        approver: Any = None,
    ) -> Reply:
        """One message to its stored answer (see the module docstring); `everywhere`: look
        for the key's stored answer in every context of the user, not only the current one."""
        with tracing.span(MESSAGE_SPAN, MESSAGE_ATTRIBUTES) as span, self.our_errors():
            turn = await self.begin(telegram_id, text, username, began)
            _describe(span, turn)
            turn.key = key
            turn.on_tool = on_tool
            turn.approver = approver
            try:
                if key is not None:
                    # Read with the user's turn held: if this update's answer is stored
                    # (an earlier delivery got that far), it is never asked again.
                    found = stored_answer(turn.resolved, turn.history, key)
                    if found is None and everywhere:
                        found = await self.answered_elsewhere(turn, key)
                    if found is not None:
                        return found
                await self.admit(turn)
                answer = await self.ask(turn, sink)
                return await self.finish(turn, answer)
            except BaseException:
                await self.admission.give_back(turn)
                raise
            finally:
                self.gate.release(turn.ticket)

    async def stream(
        self, telegram_id: int, text: str, username: str | None, out: ReplyStream
    ) -> AsyncGenerator[str, None]:
        """The same path, yielding the pieces; stores the turn when the stream ends."""
        # Started, not made current: this generator's body runs in its caller's contexts.
        span = tracing.start(MESSAGE_SPAN, MESSAGE_ATTRIBUTES, kind="internal")
        try:
            async for piece in self._stream(telegram_id, text, username, out, span):
                yield piece
        except GeneratorExit:
            tracing.end(span)
            raise
        except BaseException as exc:
            tracing.end(span, exc)
            raise
        tracing.end(span)

    async def _stream(
        self, telegram_id: int, text: str, username: str | None, out: ReplyStream, span: Any
    ) -> AsyncGenerator[str, None]:
        with self.our_errors():
            turn = await self.begin(telegram_id, text, username)
            _describe(span, turn)
            turn.on_tool = out.tool_event
            turn.approver = out.approver
            try:
                await self.admit(turn)
                pieces: asyncio.Queue[str | None] = asyncio.Queue()
                task = tracing.task_in(span, self.ask(turn, pieces.put_nowait))
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
                        self.recorder.record(turn, "".join(shown))
                out.reply = await self.finish(turn, answer)
            except BaseException:
                await self.admission.give_back(turn)
                raise
            finally:
                self.gate.release(turn.ticket)

    # -- stages -----------------------------------------------------------------------------

    async def begin(
        self, telegram_id: int, text: str, username: str | None, began: float | None = None
    ) -> Turn:
        """check → resolve → take the user's turn → read the context. `began`: when the
        message arrived (a queued one: when it was queued), else now."""
        began = time.time() if began is None else began
        name = check_incoming(
            telegram_id, text, username, max_chars=self.settings.max_message_chars
        )
        # The place in line is taken before the first await: arrival order is call order.
        ticket = self.gate.enter(telegram_id, text)
        try:
            resolved = await self.resolver.aresolve(telegram_id, username=name)
            instance = self.instance_for(resolved.secretary, telegram_id)
            await self.gate.wait(ticket, self.policy(resolved.secretary))
            # Read after taking the turn, so the model sees every earlier answered message.
            # It also proves the store is reachable before the model is paid for.
            stored = await self.store.aread(telegram_id, resolved.secretary.id)
        except BaseException:
            self.gate.release(ticket)
            raise
        summary, history = summaries.split(stored)
        turn = Turn(telegram_id, text, resolved, instance, ticket, history, summary)
        turn.began = began
        return turn

    async def admit(self, turn: Turn) -> None:
        """fit → admit."""
        turn.fit = self.budget.fit(turn)
        await self.admission.admit(turn)

    async def ask(self, turn: Turn, sink: Callable[[str], None] | None) -> str:
        """ask, counting a failed call against the version that made it."""
        try:
            return await self.asker.ask(turn, sink)
        except ModelError:
            resolved = turn.resolved
            self.counts.add(
                resolved.secretary.id,
                resolved.secretary.version,
                resolved.rollout,
                messages=1,
                errors=1,
            )
            raise

    async def finish(self, turn: Turn, answer: str) -> Reply:
        """record → commit → summarise later."""
        if not self.gate.start_commit(turn.ticket):
            raise Interrupted("a newer message of the same user took over")
        secretary = turn.resolved.secretary
        answer = storable(answer)
        # Usage first: the tokens were spent whether or not the context write succeeds.
        entry = self.recorder.record(turn, answer)
        if not await store_turn(self.store, turn, answer, self.now) and turn.key is not None:
            # Another delivery of this update stored its answer first: that one is the
            # answer, here and in the chat (the model call is paid and counted above).
            history = await self.store.aread(turn.telegram_id, turn.resolved.secretary.id)
            found = stored_answer(turn.resolved, summaries.split(history)[1], turn.key)
            if found is not None:
                return found
        self.metrics.messages.labels(secretary=secretary.name).inc()
        self.metrics.version_messages.labels(
            secretary=secretary.name, version=str(secretary.version)
        ).inc()
        self.counts.add(
            secretary.id,
            secretary.version,
            turn.resolved.rollout,
            messages=1,
            # A message whose tool failed counts as an error of its version: a canary
            # that breaks a tool is rolled back like one that breaks the model.
            errors=1 if turn.tool_failures else 0,
            prompt_tokens=entry.prompt_tokens,
            completion_tokens=entry.completion_tokens,
        )
        self.summarizer.later(turn)
        if self.canary is not None:
            self.canary.later(turn, answer)
        resolved = turn.resolved
        return Reply(
            answer,
            secretary.name,
            secretary.id,
            resolved.source,
            secretary.version,
            resolved.version_source,
            entry.model,
        )

    # -- detached turns ---------------------------------------------------------------------

    def detached(
        self,
        telegram_id: int,
        text: str,
        instance: SecretaryInstance,
        history: list[Message],
        summary: summaries.RunningSummary | None = None,
        secretary: SecretarySnapshot | None = None,
    ) -> Turn:
        """A turn outside its user's line that is never stored: an eval case, a replayed
        conversation, an assistant asked as a tool (`secretary`: the version it answers
        as, default the instance's)."""
        loop = asyncio.get_running_loop()
        ticket = Ticket(telegram_id, text, loop, loop.create_future())
        resolved = Resolved(secretary or instance.secretary, "default")
        return Turn(telegram_id, text, resolved, instance, ticket, history, summary)

    async def ask_detached(self, turn: Turn) -> str:
        """fit → ask for a detached turn: no admission, no commit, no usage recorded."""
        turn.fit = self.budget.fit(turn)
        return await self.asker.ask(turn, None)

    # -- helpers ----------------------------------------------------------------------------

    def instance_for(self, secretary: SecretarySnapshot, telegram_id: int) -> SecretaryInstance:
        """The pooled instance: one per secretary version (shared) or per user too (per-user)."""
        mode = str(secretary.params.get(PARAM_INSTANCE_MODE) or self.settings.instance_mode)
        if mode not in ("shared", "per-user"):
            raise InvalidInput(
                f"secretary {secretary.name!r} has an unknown instance_mode {mode!r}"
            )
        return self.pool.get(secretary, telegram_id if mode == "per-user" else None)

    def policy(self, secretary: SecretarySnapshot) -> Policy:
        """The secretary's double-texting policy (its param, else the setting)."""
        value = secretary.params.get(PARAM_DOUBLE_TEXTING) or self.settings.double_texting
        if value not in DOUBLE_TEXTING:
            raise InvalidInput(
                f"secretary {secretary.name!r} has an unknown double_texting {value!r}: "
                f"use one of {', '.join(DOUBLE_TEXTING)}"
            )
        return cast(Policy, value)

    async def answered_elsewhere(self, turn: Turn, key: str) -> Reply | None:
        """The answer stored with `key` in another context of the user (stored by an
        earlier delivery before the user switched secretary), with that secretary's name."""
        from dataclasses import replace

        current = turn.resolved.secretary.id
        contexts = await self.registry_hop(
            lambda: [
                c.secretary_id
                for c in self.store.iter_contexts(user_id=turn.telegram_id)
                if c.secretary_id != current
            ]
        )
        for secretary_id in contexts:
            stored = await self.store.aread(turn.telegram_id, secretary_id)
            found = stored_answer(turn.resolved, summaries.split(stored)[1], key)
            if found is not None:
                secretary = await asyncio.to_thread(self.registry.get_secretary, str(secretary_id))
                return replace(found, secretary=secretary.name, secretary_id=secretary_id)
        return None

    async def registry_hop(self, call: Callable[[], T]) -> T:
        """A blocking registry or store call, off the loop."""
        return await asyncio.to_thread(call)

    async def answered(self, telegram_id: int, key: str) -> Reply | None:
        """The stored answer to the message stored with `key`, if that turn was stored."""
        with self.our_errors():
            resolved = await self.resolver.aresolve(telegram_id)
            history = await self.store.aread(telegram_id, resolved.secretary.id)
            return stored_answer(resolved, history, key)

    @contextmanager
    def our_errors(self) -> Iterator[None]:
        """Count every failure; let only our own errors leave the entry points."""
        try:
            yield
        except AwaitingApproval:
            raise  # not a failure: the turn is parked until the user decides
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

        from secretaries_core.plumbing.db import unavailable

        if isinstance(exc, DBAPIError):
            return unavailable(self.registry.engine, exc)
        log.error("unexpected failure while answering a message", exc_info=exc)
        return SecretariesError(f"internal error ({type(exc).__name__}); see the log")
