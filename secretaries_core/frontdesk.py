"""What a chat front offers end users besides messages: choose, switch, forget, today's usage.

Async and thin: each call is the orchestrator's resolution plus one registry or store call
on the orchestrator's SQL thread pool, so a bot's event loop never blocks on the database.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from secretaries_core.catalog.schemas import AssignOut, SecretaryOut, Source
from secretaries_core.orchestrator import Orchestrator
from secretaries_core.tools.ledger import ledger_id
from secretaries_core.usage import Limits
from secretaries_core.usage.quotas import day_of, resets_at


@dataclass(frozen=True)
class Choices:
    """The active secretaries, and the user's current one (by id) and why."""

    secretaries: list[SecretaryOut]
    current: uuid.UUID
    source: Source


@dataclass(frozen=True)
class Today:
    """A user's usage today, the limits that apply to them and when they reset."""

    messages: int
    tokens: int
    limits: Limits
    resets_at: datetime


class FrontDesk:
    """End-user actions on top of an orchestrator (shares its caches and thread pool)."""

    def __init__(self, orchestrator: Orchestrator) -> None:
        self.orch = orchestrator

    async def choices(self, telegram_id: int, *, username: str | None = None) -> Choices:
        """Active secretaries and the user's current one (registers an unknown user)."""
        resolved = await self.orch.aresolve(telegram_id, username=username)
        listed = await self.orch.hops.run(self.orch.admin.list_secretaries)
        return Choices(listed, resolved.secretary.id, resolved.source)

    async def switch(self, telegram_id: int, secretary_id: uuid.UUID) -> AssignOut:
        """Assign the secretary (same rules as `secretaries assign`)."""
        return await self.orch.hops.run(self.orch.admin.assign, telegram_id, secretary_id)

    async def forget(self, telegram_id: int) -> tuple[str, bool]:
        """Clear the conversation with the current secretary: (its name, whether any)."""
        resolved = await self.orch.aresolve(telegram_id)
        secretary = resolved.secretary
        found = await self.orch.hops.run(self.orch.store.clear, telegram_id, secretary.id)
        # Its tool ledger too (and fenced with it): a call waiting for the user's approval
        # is declined, and nothing of a turn in flight is recorded after this.
        await self.orch.hops.run(self.orch.store.clear, telegram_id, ledger_id(secretary.id))
        return secretary.name, found

    async def today(self, telegram_id: int) -> Today:
        """Messages and tokens counted today, and the user's limits."""
        resolved = await self.orch.aresolve(telegram_id)
        day = day_of(self.orch.now())
        await self.orch.hops.run(self.orch.flush_usage)
        messages, tokens = await self.orch.hops.run(self.orch.quotas.used, telegram_id, day)
        return Today(messages, tokens, self.orch.limits_for(resolved), resets_at(day))
