"""Stage "admit": count the message against the user's daily quotas, or refuse it.

A message that then gets no answer gives its reservation back (`give_back`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from secretaries_core.config import Settings
from secretaries_core.conversation.resolution_cache import Resolved
from secretaries_core.conversation.turn import Turn
from secretaries_core.plumbing.hops import Hops
from secretaries_core.usage import Limits, Quotas

log = logging.getLogger(__name__)


class Admission:
    """Quota admission and refunds for turns."""

    def __init__(
        self, quotas: Quotas, settings: Settings, hops: Hops, now: Callable[[], datetime]
    ) -> None:
        self.quotas = quotas
        self.settings = settings
        self.hops = hops
        self.now = now

    def limits_for(self, resolved: Resolved) -> Limits:
        """The user's daily limits: their overrides, else the secretary's, else the settings."""
        return resolved.limits.over(Limits.from_params(resolved.secretary.params)).over(
            Limits(self.settings.messages_per_day, self.settings.tokens_per_day)
        )

    async def admit(self, turn: Turn) -> None:
        """Reserve the message (and its prompt tokens) under the limits, or `QuotaExceeded`."""
        assert turn.fit is not None
        limits = self.limits_for(turn.resolved)
        if limits.limited:
            turn.reservation = await self.hops.run(
                self.quotas.admit,
                turn.telegram_id,
                limits,
                tokens=turn.fit.prompt_tokens,
                now=self.now(),
            )

    async def give_back(self, turn: Turn) -> None:
        """A message that got no answer does not count against the quota."""
        reservation, turn.reservation = turn.reservation, None
        if reservation is None or turn.recorded:
            return
        try:
            await self.hops.run(self.quotas.refund, reservation)
        except Exception as exc:  # the message's own error is the one to report
            log.error("could not give back a quota reservation", exc_info=exc)
