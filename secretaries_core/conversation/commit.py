"""Stage "commit": the whole turn in one write, once, after the model answered.

The turn's id (a queued update's id, else a fresh one) goes on the user's own text: the
store writes a turn once per id, and a redelivered update finds its stored answer by it.
A failed or interrupted call never gets here, so the context stays exactly as it was.
When the store already holds the turn (two workers answered one update), the caller
delivers the stored answer, never its own: what a user reads is what is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from secretaries_core.context.base import ContextStore, Message
from secretaries_core.conversation.turn import IDEMPOTENCY_KEY, Turn, new_turn_id


async def store_turn(
    store: ContextStore, turn: Turn, answer: str, now: Callable[[], datetime]
) -> bool:
    """Append the user's text(s) and the answer to the turn's context; False when the
    store already held this turn (another delivery of the same update stored it first)."""
    secretary = turn.resolved.secretary
    at = now()
    meta = {IDEMPOTENCY_KEY: turn.key} if turn.key is not None else {"turn": new_turn_id()}
    items = [(turn.telegram_id, secretary.id, Message("user", t, at)) for t in turn.texts]
    tid, sid, last = items[-1]
    items[-1] = (tid, sid, Message(last.role, last.content, last.at, meta))
    # The version that wrote the answer travels with it (feedback finds it there).
    written: dict[str, object] = {"version": secretary.version}
    if turn.usage is not None and turn.usage.truncated:
        written["truncated"] = True  # cut at the token limit (finish_reason "length")
    # The tool rounds, in OpenAI shapes: the assistant's calls, then their results.
    for step in turn.steps:
        if step["role"] == "assistant":
            calls = {"tool_calls": step["tool_calls"]}
            message = Message("assistant", step.get("content") or "", at, calls)
        else:
            message = Message("tool", step["content"], at, {"tool_call_id": step["tool_call_id"]})
        items.append((turn.telegram_id, secretary.id, message))
    items.append((turn.telegram_id, secretary.id, Message("assistant", answer, now(), written)))
    count = await store.aappend_many(items, policy=turn.instance.policy, since=turn.began)
    return count > 0
