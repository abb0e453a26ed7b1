"""Fitting a context into the model's window: whole turns, newest first, under a token budget.

A *turn* is the user message(s) and the assistant answer(s) that followed them — with the
tool calls and results in between; a turn is sent whole or not at all, so the model never
sees an answer without its question, nor a tool result without its call. The
system prompt (with the running summary) and the new message(s) are always sent; history
fills what is left of `max_context_tokens` after the room kept for the reply
(`max_tokens` / `max_completion_tokens` when the secretary sets one).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from secretaries_core.context.base import Message
from secretaries_core.conversation.tokens import REPLY_PRIMING, TokenCounter
from secretaries_core.errors import InvalidInput

PARAM_MAX_CONTEXT_TOKENS = "max_context_tokens"
_REPLY_PARAMS = ("max_completion_tokens", "max_tokens")

Turn = list[Message]


def group_turns(messages: Sequence[Message]) -> list[Turn]:
    """Split history (oldest first) into turns: user message(s), then what answered them."""
    turns: list[Turn] = []
    for message in messages:
        starts_turn = message.role == "user" and (not turns or turns[-1][-1].role != "user")
        if starts_turn or not turns:
            turns.append([message])
        else:
            turns[-1].append(message)
    return turns


def counted_text(message: Message) -> str:
    """What a message costs in tokens: its text, and an assistant's tool calls (names and
    arguments as sent)."""
    calls = (message.metadata or {}).get("tool_calls") if message.metadata else None
    if not calls:
        return message.content
    return message.content + json.dumps(calls, ensure_ascii=False)


def _positive_int(params: Mapping[str, Any], key: str) -> int | None:
    value = params.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidInput(f"secretary param {key} must be a positive integer, got {value!r}")
    try:
        number = int(value)
    except ValueError:  # reported below, with the others
        number = 0
    if number <= 0:
        raise InvalidInput(f"secretary param {key} must be a positive integer, got {value!r}")
    return number


def context_limit(params: Mapping[str, Any], default: int) -> int:
    """The secretary's `max_context_tokens`, else the setting."""
    return _positive_int(params, PARAM_MAX_CONTEXT_TOKENS) or default


def reply_room(params: Mapping[str, Any]) -> int:
    """Tokens kept free for the reply: the secretary's max_tokens-like param, else none."""
    for key in _REPLY_PARAMS:
        found = _positive_int(params, key)
        if found is not None:
            return found
    return 0


@dataclass(frozen=True)
class Fit:
    """History split by the budget, and what the request costs by our count."""

    kept: list[Turn]
    dropped: list[Turn]
    prompt_tokens: int

    @cached_property
    def history(self) -> list[Message]:
        """The kept turns as one list, oldest first (the same list on every ask: a turn's
        tool rounds send it again, and the model body's encoding is kept by list)."""
        return [m for turn in self.kept for m in turn]


def fit_history(
    turns: Sequence[Turn],
    *,
    counter: TokenCounter,
    model: str,
    system: str,
    texts: Sequence[str],
    limit: int,
    reply_tokens: int = 0,
    max_turns: int | None = None,
) -> Fit:
    """Keep the newest whole turns that fit `limit` tokens (at most `max_turns` of them)."""
    fixed = (
        counter.message(model, system)
        + sum(counter.message(model, t) for t in texts)
        + REPLY_PRIMING
    )
    room = limit - reply_tokens - fixed
    kept_from = len(turns)
    used = 0
    floor = 0 if max_turns is None else max(0, len(turns) - max_turns)
    # Every message's cost in one call: per-turn calls cost more than the lookups.
    costs = counter.each(model, [counted_text(m) for turn in turns[floor:] for m in turn])
    total = sum(costs)
    if total <= room:
        # The whole history fits (the common case): no walk turn by turn.
        kept_from, used = floor, total
    end = len(costs)
    while kept_from > floor:
        size = len(turns[kept_from - 1])
        cost = sum(costs[end - size : end])
        if used + cost > room:
            break
        used += cost
        end -= size
        kept_from -= 1
    return Fit(list(turns[kept_from:]), list(turns[:kept_from]), fixed + used)
