"""Running summaries: turns that no longer fit the budget, folded into one short text.

The summary is stored in the context itself, as a message of role `summary` whose metadata
says up to which message it reaches (`through`, a timestamp). So it lives, expires, is
trimmed, purged and erased exactly like the context, on every backend, with no new keys or
tables. The newest summary (largest `through`) wins; the model never sees `summary`
messages as turns, only the text, in the system message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from secretaries_core.context.base import Message
from secretaries_core.llm.base import ChatRequest

ROLE = "summary"
PARAM_SUMMARIZE = "summarize"
PARAM_SUMMARY_MODEL = "summary_model"
MAX_SUMMARY_CHARS = 6000
INSTRUCTIONS = (
    "You keep a running summary of a conversation between a user and an assistant. "
    "Rewrite the summary so that it also covers the new messages: keep names, facts, "
    "decisions, preferences and open questions; drop small talk. Reply with the summary "
    "only, in the conversation's language, in at most 200 words."
)


@dataclass(frozen=True)
class RunningSummary:
    """The summary text and the timestamp of the newest message it covers."""

    text: str
    through: float


def wanted(params: Mapping[str, Any]) -> bool:
    """True when the secretary opted in with `summarize=true`."""
    value = params.get(PARAM_SUMMARIZE)
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def split(history: Sequence[Message]) -> tuple[RunningSummary | None, list[Message]]:
    """The newest running summary in `history`, and the conversation messages without it."""
    best: RunningSummary | None = None
    turns: list[Message] = []
    for message in history:
        if message.role != ROLE:
            turns.append(message)
            continue
        through = (message.metadata or {}).get("through")
        if isinstance(through, int | float) and (best is None or through > best.through):
            best = RunningSummary(message.content, float(through))
    return best, turns


def unsummarized(dropped: Sequence[Message], summary: RunningSummary | None) -> list[Message]:
    """The dropped messages the summary does not cover yet."""
    since = summary.through if summary is not None else float("-inf")
    return [m for m in dropped if m.at.timestamp() > since]


def request(
    secretary: str, summary: RunningSummary | None, messages: Sequence[Message], params: Any
) -> ChatRequest:
    """The model call that folds `messages` into `summary`."""
    lines = [_line(m) for m in messages]
    earlier = summary.text if summary is not None else "(none yet)"
    text = f"Summary so far:\n{earlier}\n\nNew messages:\n" + "\n".join(lines)
    model_params = {k: v for k, v in params.items() if k in ("temperature", "top_p", "seed")}
    return ChatRequest(
        secretary=secretary, prompt=INSTRUCTIONS, history=(), texts=(text,), params=model_params
    )


def _line(message: Message) -> str:
    """One message as the summariser reads it; a tool round as what was called and got."""
    calls = (message.metadata or {}).get("tool_calls") if message.metadata else None
    if message.role == "assistant" and calls:
        named = ", ".join(
            f"{c.get('function', {}).get('name')}({c.get('function', {}).get('arguments')})"
            for c in calls
            if isinstance(c, dict)
        )
        return f"assistant called tools: {named}"
    if message.role == "tool":
        return f"tool result: {message.content}"
    return f"{message.role}: {message.content}"


def message(text: str, covered: Sequence[Message], at: datetime) -> Message:
    """The context entry holding a new summary of everything up to `covered[-1]`."""
    # Keep the end when a model rambles: the newest facts matter most.
    body = text.strip()[-MAX_SUMMARY_CHARS:]
    return Message(ROLE, body, at, {"through": covered[-1].at.timestamp()})
