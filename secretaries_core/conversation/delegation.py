"""Stage "delegate": another assistant asked as a tool (`tools add NAME --assistant A`).

The callee answers as itself — its live version's prompt, model (with its provider and
fallbacks) and its own tools — through the same stages as a message (fitting, the model,
the tool loop), and nothing of it is stored: it is a call, not a conversation, and its
answer is the tool's result. What it is shown besides the caller's message: nothing
(`none`), the user's last message (`last`) or the caller's whole history (`all`).

Bounds: calls nest at most `MAX_DEPTH` deep; the callee's time is the call's timeout,
which the tool loop already caps at what is left of the message deadline; its tool rounds
come out of the caller's (a shared count, so nesting cannot multiply them). Its usage is
recorded for the calling user under the callee's name, its version counts under its own
version. A queued message's nested calls are exactly-once too: the callee's tool rounds
are kept in its own ledger under the caller's call id.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from secretaries_core.context.base import Message
from secretaries_core.conversation.instances import SecretarySnapshot
from secretaries_core.conversation.turn import Turn
from secretaries_core.errors import SecretariesError
from secretaries_core.plumbing import tracing
from secretaries_core.tools.calling import ToolResult
from secretaries_core.tools.spec import ToolSpec

if TYPE_CHECKING:
    from secretaries_core.conversation.path import MessagePath

MAX_DEPTH = 3


def _history(caller: Turn, mode: str) -> list[Message]:
    if mode == "none":
        return []
    at = datetime.now(UTC)
    said = [Message("user", text, at) for text in caller.texts]
    if mode == "last":
        return said[-1:]
    return [*caller.history, *said]


class Delegator:
    """Asks assistants as tools on behalf of a caller's turn."""

    def __init__(self, path: MessagePath) -> None:
        self.path = path

    async def call(
        self, caller: Turn, spec: ToolSpec, arguments: dict[str, Any], call_id: str, timeout: float
    ) -> ToolResult:
        """The callee's answer as a tool result (a one-line error when it has none)."""
        started = time.monotonic()

        def failed(text: str) -> ToolResult:
            return ToolResult(f"error: {text}", False, time.monotonic() - started)

        message = arguments.get("message")
        if not isinstance(message, str) or not message.strip():
            return failed("the call needs a non-empty `message` string")
        if caller.depth >= MAX_DEPTH:
            return failed(f"assistants may be nested {MAX_DEPTH} deep at most")
        try:
            found = await self.path.registry_hop(
                lambda: self.path.registry.get_secretary(spec.assistant or "")
            )
        except SecretariesError as exc:
            return failed(f"assistant {spec.assistant!r}: {exc}")
        if not found.is_active:
            return failed(f"assistant {found.name!r} is inactive")
        snapshot = SecretarySnapshot(
            found.id, found.name, found.model, found.prompt, dict(found.params), found.version
        )
        instance = self.path.instance_for(snapshot, caller.telegram_id)
        turn = self.path.detached(
            caller.telegram_id,
            message,
            instance,
            _history(caller, spec.history),
            secretary=snapshot,
        )
        turn.depth = caller.depth + 1
        turn.rounds_left = caller.rounds_left
        turn.tools_mode = caller.tools_mode
        turn.replayed = caller.replayed
        turn.approver = caller.approver
        turn.began = caller.began
        # The callee's own calls: exactly-once under the caller's call id (queued messages).
        turn.key = call_id if caller.key is not None else None
        tracing.set_attributes(
            tracing.current(),
            {"secretaries.assistant": found.name, "secretaries.depth": turn.depth},
        )
        answer = ""
        try:
            async with asyncio.timeout(timeout):
                answer = await self.path.ask_detached(turn)
        except TimeoutError:
            return failed(f"assistant {found.name} did not answer within {timeout:.0f}s")
        except SecretariesError as exc:
            return failed(f"assistant {found.name}: {type(exc).__name__}: {str(exc)[:200]}")
        finally:
            if turn.fit is not None and turn.usage is not None:
                entry = self.path.recorder.record(turn, answer)
                self.path.counts.add(
                    found.id,
                    found.version,
                    None,
                    messages=1,
                    errors=0 if answer else 1,
                    prompt_tokens=entry.prompt_tokens,
                    completion_tokens=entry.completion_tokens,
                )
        caller.not_run.extend(turn.not_run)
        return ToolResult(answer, True, time.monotonic() - started)
