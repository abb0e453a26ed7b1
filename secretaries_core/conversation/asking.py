"""Stage "ask": the model's answer under the message deadline.

One deadline (`SECRETARIES_MODEL_TIMEOUT`) covers the whole wait, the SDK's retries and a
trickling body included. A provider that still finds the input too long gets it once more
with half the history. A newer message of the same user may cancel the call (policy
`interrupt`): that surfaces as `Interrupted`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from secretaries_core.config import Settings
from secretaries_core.conversation.fitting import Budgeter
from secretaries_core.conversation.tooling import ToolLoop
from secretaries_core.conversation.turn import Turn
from secretaries_core.errors import Interrupted, ModelUnavailable
from secretaries_core.llm.base import CallUsage
from secretaries_core.llm.openai_client import ContextTooLong
from secretaries_core.plumbing.metrics import Metrics

Sink = Callable[[str], None]


class Asker:
    """Asks a turn's instance for its answer."""

    def __init__(
        self,
        budget: Budgeter,
        settings: Settings,
        metrics: Metrics,
        tools: ToolLoop | None = None,
    ) -> None:
        self.budget = budget
        self.settings = settings
        self.metrics = metrics
        self.tools = tools

    async def ask(self, turn: Turn, sink: Sink | None) -> str:
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

    async def _model(self, turn: Turn, sink: Sink | None) -> str:
        secretary = turn.resolved.secretary
        deadline = self.settings.model_timeout_seconds
        parts: list[str] = []
        started = time.perf_counter()
        ends = time.monotonic() + deadline
        try:
            async with asyncio.timeout(deadline):
                try:
                    await self._call(turn, parts, sink, ends)
                except ContextTooLong:
                    # Our count said it fits, the provider disagrees: once more with half
                    # the tokens (remembered for this model, so the next messages start
                    # below it). Not after pieces went out: they cannot be taken back.
                    smaller = self.budget.refused(turn)
                    if parts or smaller is None:
                        raise
                    self.metrics.context_retries.labels(secretary=secretary.name).inc()
                    turn.fit = smaller
                    await self._call(turn, parts, sink, ends)
        except TimeoutError:
            raise ModelUnavailable(
                f"{secretary.name}: the model gave no complete reply within {deadline:g}s"
            ) from None
        self.metrics.model_latency.labels(secretary=secretary.name).observe(
            time.perf_counter() - started
        )
        return "".join(parts)

    async def _call(self, turn: Turn, parts: list[str], sink: Sink | None, ends: float) -> None:
        assert turn.fit is not None
        offered = await self.tools.offered(turn) if self.tools is not None else {}
        if offered:
            # The secretary has tools: the tool loop asks, calls, and asks again.
            assert self.tools is not None
            await self.tools.run(turn, offered, parts, sink, ends)
            return
        request = turn.instance.request(
            turn.fit.history,
            turn.texts,
            summary=turn.summary.text if turn.summary else None,
        )
        turn.usage = CallUsage()
        async for piece in turn.instance.reply(request, stream=sink is not None, usage=turn.usage):
            parts.append(piece)
            if sink is not None:
                sink(piece)
