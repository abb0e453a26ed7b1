"""Stage "fit": the newest whole turns that fit the secretary's token budget.

Remembers, per (secretary, model), the smallest prompt the provider refused as too long,
so later budgets start below it and a context never stays stuck.
"""

from __future__ import annotations

import uuid

from secretaries_core.config import Settings
from secretaries_core.conversation.budget import (
    Fit,
    context_limit,
    fit_history,
    group_turns,
    reply_room,
)
from secretaries_core.conversation.instances import with_summary
from secretaries_core.conversation.tokens import TokenCounter
from secretaries_core.conversation.turn import Turn


class Budgeter:
    """Fits turns to budgets and learns from the provider's refusals."""

    def __init__(self, tokens: TokenCounter, settings: Settings) -> None:
        self.tokens = tokens
        self.settings = settings
        # (secretary, model) -> one less than the smallest prompt (our count) the provider
        # refused as too long: later budgets stay below it.
        self.refused_at: dict[tuple[uuid.UUID, str], int] = {}

    def fit(self, turn: Turn, limit: int | None = None) -> Fit:
        """The newest whole turns that fit the secretary's token budget (or `limit`)."""
        secretary = turn.resolved.secretary
        if limit is None:
            limit = context_limit(secretary.params, self.settings.max_context_tokens)
            limit = min(limit, self.refused_at.get((secretary.id, secretary.model), limit))
        return fit_history(
            group_turns(turn.history),
            counter=self.tokens,
            model=secretary.model,
            system=with_summary(secretary.prompt, turn.summary.text if turn.summary else None),
            texts=turn.texts,
            limit=limit,
            reply_tokens=reply_room(secretary.params),
        )

    def refused(self, turn: Turn) -> Fit | None:
        """The provider refused `turn.fit` as too long: a fit with half the tokens, or None
        when halving keeps the same turns (nothing left to drop)."""
        assert turn.fit is not None
        secretary = turn.resolved.secretary
        size = turn.fit.prompt_tokens
        key = (secretary.id, secretary.model)
        self.refused_at[key] = min(self.refused_at.get(key, size), size - 1)
        smaller = self.fit(turn, limit=size // 2)
        return None if len(smaller.kept) == len(turn.fit.kept) else smaller
