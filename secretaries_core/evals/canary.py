"""The judge in a canary: a sample of the candidate's live replies, judged in the background.

A rollout started with `--judge RUBRIC` has each candidate reply judged with probability
`--judge-sample`% after it was stored (never before the reply: the user is not kept
waiting). Each verdict counts for the candidate version (`judged`, `judge_failed`, in the
rollout's period too), and the counts' flush checks the rollout: once `--min-messages`
replies were judged and the failure rate is above `--max-judge-fail-rate`, the rollout
rolls itself back like an error-rate breach. A verdict the judge does not give in a
readable form counts as a failure (a reply nobody could vouch for is not a pass). The
judge's tokens count under the period `judge`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from secretaries_core.conversation.turn import Turn
from secretaries_core.errors import SecretariesError
from secretaries_core.evals.judge import Unreadable, count_judge_usage, judge
from secretaries_core.llm.base import CallUsage, ModelAdapter

log = logging.getLogger(__name__)
ROLLOUT_TTL_S = 2.0  # how long a rollout's judge settings are kept in this process


class CanaryJudge:
    """Judges sampled candidate replies of running rollouts that have a judge."""

    def __init__(
        self,
        running_rollout: Callable[[uuid.UUID], Any],
        hop: Callable[..., Awaitable[Any]],
        counts: Any,
        adapter_for: Callable[[str], ModelAdapter],
        deadline: float,
        chance: Callable[[], float] = random.random,
    ) -> None:
        self.running_rollout = running_rollout
        self.hop = hop
        self.counts = counts
        self.adapter_for = adapter_for
        self.deadline = deadline
        self.chance = chance
        self.background: set[asyncio.Task[None]] = set()
        self._rollouts: dict[uuid.UUID, tuple[float, Any]] = {}

    def later(self, turn: Turn, answer: str) -> None:
        """Judge `answer` in the background if its rollout asks for it (and the draw says)."""
        if turn.resolved.rollout is None:
            return
        task = asyncio.ensure_future(self._maybe(turn, answer))
        self.background.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a canary judgement failed", exc_info=task.exception())

    async def _rollout(self, rollout_id: uuid.UUID) -> Any:
        now = time.monotonic()
        cached = self._rollouts.get(rollout_id)
        if cached is not None and now - cached[0] < ROLLOUT_TTL_S:
            return cached[1]
        found = await self.hop(self.running_rollout, rollout_id)
        self._rollouts[rollout_id] = (now, found)
        return found

    async def _maybe(self, turn: Turn, answer: str) -> None:
        resolved = turn.resolved
        secretary = resolved.secretary
        try:
            assert resolved.rollout is not None
            rollout = await self._rollout(resolved.rollout)
            if (
                rollout is None
                or not rollout.judge_rubric
                or secretary.version != rollout.candidate_version
                or self.chance() * 100 >= float(rollout.judge_sample or 100)
            ):
                return
            adapter = self.adapter_for(rollout.judge_model or secretary.model)
            usage = CallUsage()
            history = [
                (m.role, m.content) for m in turn.history[-6:] if m.role in ("user", "assistant")
            ]
            try:
                async with asyncio.timeout(self.deadline):
                    verdict = await judge(
                        adapter, rollout.judge_rubric, history, turn.text, answer, usage
                    )
                failed = not verdict.passed
            except Unreadable as exc:
                log.warning("rollout of %s: %s (counted as a failure)", secretary.name, exc)
                failed = True
            finally:
                count_judge_usage(self.counts, secretary.id, secretary.version, usage)
            self.counts.add(
                secretary.id,
                secretary.version,
                resolved.rollout,
                judged=1,
                judge_failed=1 if failed else 0,
            )
        except (SecretariesError, TimeoutError) as exc:
            # The judge is down: this reply goes unjudged (the sample is a sample).
            log.warning("rollout of %s: a reply was not judged: %s", secretary.name, exc)

    async def drain(self) -> None:
        """Wait (up to the deadline) for judgements started on this event loop."""
        loop = asyncio.get_running_loop()
        mine = [t for t in self.background if t.get_loop() is loop]
        if mine:
            await asyncio.wait(mine, timeout=self.deadline)
