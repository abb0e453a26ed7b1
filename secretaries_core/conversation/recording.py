"""Stage "record": a call's usage (tokens as the provider reported them, else estimated).

Summed in memory and written in batches behind the message path (usage/writer.py); the
Prometheus token counters move at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from secretaries_core.conversation.instances import SecretarySnapshot
from secretaries_core.conversation.tokens import TokenCounter
from secretaries_core.conversation.turn import Turn
from secretaries_core.llm.base import CallUsage
from secretaries_core.plumbing.metrics import Metrics
from secretaries_core.usage import UsageEntry
from secretaries_core.usage.quotas import day_of
from secretaries_core.usage.writer import UsageWriter


class UsageRecorder:
    """Turns calls into usage entries and hands them to the writer."""

    def __init__(
        self,
        writer: UsageWriter,
        tokens: TokenCounter,
        metrics: Metrics,
        now: Callable[[], datetime],
    ) -> None:
        self.writer = writer
        self.tokens = tokens
        self.metrics = metrics
        self.now = now

    def entry(
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
        """One call's usage entry (and its metrics)."""
        reported = usage is not None and usage.reported
        prompt = usage.prompt_tokens if usage is not None and reported else prompt_estimate
        completion = (
            usage.completion_tokens
            if usage is not None and reported
            else self.tokens.count(model, answer)
        )
        assert prompt is not None and completion is not None
        tokens = self.metrics.tokens
        tokens.labels(secretary=secretary.name, model=model, kind="prompt").inc(prompt)
        tokens.labels(secretary=secretary.name, model=model, kind="completion").inc(completion)
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

    def record(self, turn: Turn, answer: str) -> UsageEntry:
        """Queue the turn's usage (and the quota's token correction) for the writer."""
        assert turn.fit is not None
        secretary = turn.resolved.secretary
        answered_by = (turn.usage.model if turn.usage else None) or secretary.model
        entry = self.entry(
            turn.telegram_id,
            secretary,
            answered_by,
            turn.usage,
            turn.fit.prompt_tokens,
            answer,
            messages=1,
        )
        if turn.reservation is not None:
            # Counted on the day it was admitted, even if it finished after midnight.
            entry = replace(entry, day=turn.reservation.day)
        if turn.tool_calls:
            entry = replace(entry, tool_calls=turn.tool_calls)
        admitted = turn.reservation.tokens if turn.reservation is not None else None
        turn.recorded = True
        self.writer.add([entry], admitted)
        return entry
