"""Approval of `--confirm` tool calls by the user: what is asked, and what is decided.

A call of a `--confirm` tool is sent only once the user approved it. Who asks is the
caller's `approver`: the Telegram front (an inline keyboard), or a REST/CLI caller's
`approve` flag; without one the call is declined. The decision is kept with the call id
(in the tool ledger for a queued message), so a turn answered again neither asks twice
nor runs the call twice. Declined, denied or unanswered in time, the model is told the
user declined and the call is not sent.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from secretaries_core.errors import SecretariesError

APPROVED, DENIED, TIMED_OUT, NOT_ASKED = "approved", "denied", "timeout", "not asked"
DECISIONS = (APPROVED, DENIED, TIMED_OUT, NOT_ASKED)
SUMMARY_CHARS = 300


@dataclass(frozen=True)
class Approval:
    """One call waiting for the user's approval."""

    call_id: str
    tool: str  # the registered tool
    function: str  # what the model called (`NAME` or `NAME__TOOL`)
    arguments: dict[str, Any]
    telegram_id: int
    secretary: str
    secretary_id: uuid.UUID  # whose tool ledger keeps the decision

    def summary(self) -> str:
        """The call as a user reads it: `book: room=A, hour=9` (cut to a few lines)."""
        parts = []
        for key, value in self.arguments.items():
            shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            parts.append(f"{key}={shown}")
        text = f"{self.function}: {', '.join(parts)}" if parts else self.function
        return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "…"


# Returns a decision (APPROVED, DENIED, TIMED_OUT), or raises `AwaitingApproval` when the
# decision will come later (a queued message parks until the user presses a button).
Approver = Callable[[Approval], Awaitable[str]]


class AwaitingApproval(SecretariesError):
    """The turn waits for the user's decision on a call; it is resumed once it comes."""

    def __init__(self, approval: Approval) -> None:
        super().__init__(f"waiting for the user's approval of {approval.function}")
        self.approval = approval


def fixed(approve: bool) -> Approver:
    """An approver that answers every call at once: a REST or CLI caller's flag."""

    async def decide(_approval: Approval) -> str:
        return APPROVED if approve else NOT_ASKED

    return decide


def declined_text(decision: str, function: str) -> str:
    """What the model is told of a call the user did not approve."""
    why = {
        DENIED: "the user declined it",
        TIMED_OUT: "the user did not answer in time",
        NOT_ASKED: "the user could not be asked (approve it explicitly to run it)",
    }.get(decision, "the user declined it")
    return f"not run: {why}; {function} needs the user's approval"
