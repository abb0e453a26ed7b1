"""The values of the message path: one `Turn` in flight, its `Reply`, a streamed `ReplyStream`."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

from secretaries_core.catalog.serving import Source
from secretaries_core.context.base import Message
from secretaries_core.conversation import summaries
from secretaries_core.conversation.budget import Fit
from secretaries_core.conversation.instances import SecretaryInstance
from secretaries_core.conversation.ordering import Ticket
from secretaries_core.conversation.resolution_cache import Resolved
from secretaries_core.llm.base import CallUsage
from secretaries_core.usage import Reservation

IDEMPOTENCY_KEY = "update_id"  # metadata key of a queued message's id on its stored text


@dataclass(frozen=True)
class Reply:
    """The answer to one message, with the secretary that gave it and why it was chosen."""

    text: str
    secretary: str
    secretary_id: uuid.UUID
    source: Source
    version: int = 0
    version_source: str = "live"
    model: str = ""  # the model that answered (a fallback's, when one did)


@dataclass
class Turn:
    """One message between taking its user's turn and storing its answer.

    Each stage of the path fills in its part: resolution `resolved` and `instance`, the
    read `history` and `summary`, the budget `fit`, admission `reservation`, the model
    call `usage`, recording `recorded`.
    """

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
    # When the message arrived (epoch seconds): its writes are refused after a fence that
    # is newer (an erase, `/new`; see context/fences.py).
    began: float = 0.0
    # Tool calls this turn ran (usage `tool_calls`), its tool rounds in OpenAI shapes (stored
    # with the answer), and who hears of each call starting and ending (Telegram's draft,
    # the SSE stream): `on_tool(name, "started" | "done" | "failed")`.
    tool_calls: int = 0
    tool_failures: int = 0  # calls that failed (counted as an error of the version)
    steps: list[dict[str, Any]] = field(default_factory=list)
    on_tool: Callable[[str, str], None] | None = None
    # "live", or "eval"/"replay": then only read-only tools run; the others are answered
    # "not run in eval" and listed in `not_run`.
    tools_mode: str = "live"
    not_run: list[str] = field(default_factory=list)
    # A replay: the results the replayed conversation stored, by `same_call(name, args)`;
    # a side-effecting call made again with the same arguments is answered from them.
    replayed: dict[tuple[str, str], str] = field(default_factory=dict)
    # An assistant asked as a tool: how deep (0: the user's own message), and the tool
    # rounds left to the whole nest (one shared count).
    depth: int = 0
    rounds_left: list[int] | None = None
    # Asks the user to approve a `--confirm` call (tools/approval.py); None: declined.
    approver: Any = None
    tool_turn: str = ""  # the call ids' turn part when the message has no update id
    tool_ledger: Any = None  # tools.ledger.TurnLedger: read once, kept across retries

    @property
    def texts(self) -> list[str]:
        """The user messages this turn answers: superseded earlier ones, then its own."""
        return [*self.ticket.carried, self.text]


class ReplyStream:
    """The pieces of one streamed reply (an async iterator); `reply` once it has ended."""

    def __init__(self) -> None:
        self.reply: Reply | None = None
        self._pieces: AsyncGenerator[str, None] | None = None
        # Set before iterating to hear of tool calls: `on_tool(function, state)`.
        self.on_tool: Callable[[str, str], None] | None = None
        # Set before iterating to let the user approve `--confirm` calls (tools/approval.py).
        self.approver: Any = None

    def tool_event(self, function: str, state: str) -> None:
        """Pass a tool call's start or end to `on_tool`, if set."""
        if self.on_tool is not None:
            self.on_tool(function, state)

    def __aiter__(self) -> ReplyStream:
        return self

    async def __anext__(self) -> str:
        assert self._pieces is not None
        return await anext(self._pieces)

    async def aclose(self) -> None:
        """Stop early: the model call is cancelled and nothing is stored."""
        if self._pieces is not None:
            await self._pieces.aclose()


def new_turn_id() -> str:
    """A fresh id for a turn that has no update id (12 hex digits: unique per context)."""
    return uuid.uuid4().hex[:12]


def stored_answer(resolved: Resolved, history: list[Message], key: str) -> Reply | None:
    """The stored answer to the message stored with idempotency `key`, if any (the text
    that ended its turn: the assistant's tool calls and their results come before it)."""
    for i, message in enumerate(history):
        if (message.metadata or {}).get(IDEMPOTENCY_KEY) == key:
            for later in history[i + 1 :]:
                if later.role == "user":
                    return None
                if later.role == "assistant" and not (later.metadata or {}).get("tool_calls"):
                    secretary = resolved.secretary
                    version = int((later.metadata or {}).get("version") or secretary.version)
                    return Reply(
                        later.content,
                        secretary.name,
                        secretary.id,
                        resolved.source,
                        version,
                        resolved.version_source,
                    )
    return None
