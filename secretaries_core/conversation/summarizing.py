"""Stage "summarise": turns that fell out of the budget, folded into the running summary.

In the background after the reply (never before it), one at a time per context; a failed
summary changes nothing (the turns stay, the next overflow tries again).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import datetime

from secretaries_core.config import Settings
from secretaries_core.context.base import ContextStore, Message
from secretaries_core.conversation import summaries
from secretaries_core.conversation.recording import UsageRecorder
from secretaries_core.conversation.text import storable
from secretaries_core.conversation.turn import Turn
from secretaries_core.errors import ModelUnavailable
from secretaries_core.llm.base import CallUsage, ChatRequest, ModelAdapter
from secretaries_core.llm.providers import ProviderClients, build_adapter
from secretaries_core.plumbing.metrics import Metrics

log = logging.getLogger(__name__)


class Summarizer:
    """Background summaries, tracked so `drain`/close can let them finish."""

    def __init__(
        self,
        store: ContextStore,
        recorder: UsageRecorder,
        clients: ProviderClients,
        settings: Settings,
        metrics: Metrics,
        now: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.recorder = recorder
        self.clients = clients
        self.settings = settings
        self.metrics = metrics
        self.now = now
        self.background: set[asyncio.Task[None]] = set()
        self._busy: set[tuple[int, uuid.UUID]] = set()

    def later(self, turn: Turn) -> None:
        """Start a summary of what `turn` dropped, if the secretary wants one."""
        secretary = turn.resolved.secretary
        if turn.fit is None or not turn.fit.dropped or not summaries.wanted(secretary.params):
            return
        dropped = [m for t in turn.fit.dropped for m in t]
        fresh = summaries.unsummarized(dropped, turn.summary)
        key = (turn.telegram_id, secretary.id)
        if not fresh or key in self._busy:
            return
        self._busy.add(key)
        task = asyncio.ensure_future(self._summarize(turn, fresh))
        self.background.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self.background.discard(finished)
            self._busy.discard(key)

        task.add_done_callback(done)

    async def drain(self) -> None:
        """Wait (up to the model deadline) for summaries started on this event loop."""
        loop = asyncio.get_running_loop()
        mine = [t for t in self.background if t.get_loop() is loop]
        if mine:
            await asyncio.wait(mine, timeout=self.settings.model_timeout_seconds)

    async def _summarize(self, turn: Turn, fresh: list[Message]) -> None:
        """Fold `fresh` into the running summary; on failure keep everything as it was."""
        secretary = turn.resolved.secretary
        model = str(secretary.params.get(summaries.PARAM_SUMMARY_MODEL) or secretary.model)
        request = summaries.request(secretary.name, turn.summary, fresh, secretary.params)
        usage = CallUsage()
        try:
            adapter: ModelAdapter = (
                turn.instance.adapter
                if model == secretary.model
                else build_adapter(model, self.clients)
            )
            async with asyncio.timeout(self.settings.model_timeout_seconds):
                pieces = adapter.pieces(request, stream=False, usage=usage)
                text = "".join([piece async for piece in pieces])
            text = storable(text)
            if not text.strip():
                raise ModelUnavailable(f"{model}: an empty summary")
            entry = self.recorder.entry(
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
                since=turn.began,  # a summary of turns erased or cleared meanwhile: refused
            )
            self.recorder.writer.add([entry])
            self.metrics.summaries.labels(outcome="ok").inc()
        except (Exception, TimeoutError) as exc:
            # The turns stay in the context; the next overflow tries again.
            self.metrics.summaries.labels(outcome="failed").inc()
            log.warning("summary for %s failed: %s", secretary.name, exc)

    def _request_tokens(self, model: str, request: ChatRequest) -> int:
        return self.recorder.tokens.messages(
            model, [str(m.get("content") or "") for m in request.messages()]
        )
