"""What every model adapter offers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from secretaries_core.plumbing.memo import each_once


@dataclass(frozen=True)
class ChatTurn:
    """One earlier message handed to the model: `role` is user or assistant."""

    role: str
    content: str


class Said(Protocol):
    """What the model is handed of an earlier message: a `ChatTurn`, or a stored message."""

    @property
    def role(self) -> str:
        """user or assistant."""
        ...

    @property
    def content(self) -> str:
        """The text."""
        ...


@dataclass(frozen=True)
class ToolCall:
    """One function call the model asked for: its id, the function's name, the arguments
    as the JSON text the model wrote."""

    id: str
    name: str
    arguments: str

    def as_openai(self) -> dict[str, Any]:
        """The call as it goes back in an assistant message's `tool_calls`."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass
class CallUsage:
    """Tokens one model call used, as the provider reported them (None: not reported)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    # The model that answered, when a fallback chain chose one other than the first.
    model: str | None = None
    # The reply stopped at the token limit (`finish_reason: "length"`): it is stored as
    # answered, marked `truncated` on the stored message.
    truncated: bool = False
    # The function calls the model answered with (tools offered; empty for a text reply).
    tool_calls: list[ToolCall] = field(default_factory=list)

    @property
    def reported(self) -> bool:
        """True when the provider gave both counts."""
        return self.prompt_tokens is not None and self.completion_tokens is not None


@dataclass(frozen=True)
class ChatRequest:
    """One model call: the system prompt, the stored history, then the new user text(s).

    `texts` holds more than one message when newer messages interrupted older ones
    (double-texting policy `interrupt`): they are all answered together, oldest first.
    """

    secretary: str
    prompt: str
    # Stored messages are passed as they are: copying a 100-message history into ChatTurns
    # on every message cost more than sending it.
    history: Sequence[Said]
    texts: Sequence[str]
    params: Mapping[str, Any]
    # The functions offered (OpenAI `tools`), the `tool_choice` ("none" after the last
    # round), and this turn's tool rounds so far: assistant `tool_calls` messages and
    # `tool` results, in OpenAI shapes, sent after the texts.
    tools: Sequence[Mapping[str, Any]] = ()
    tool_choice: str | None = None
    steps: Sequence[Mapping[str, Any]] = ()

    def _said(self) -> list[tuple[str, str]]:
        """(role, content) of every plain message: the system prompt, the history, the texts."""
        said = [("system", self.prompt)]
        said += [(turn.role, turn.content) for turn in self.history]
        said += [("user", text) for text in self.texts]
        return said

    def messages(self) -> list[dict[str, Any]]:
        """The chat-completions `messages` list."""
        return [json.loads(text) for text in self._encoded_all()]

    def messages_json(self) -> str:
        """`messages()` as JSON text, each plain message encoded once per process.

        The same history goes out again on every message of its user: encoding it anew
        was most of what a request's CPU still grew by with the history.
        """
        return "[" + ", ".join(self._encoded_all()) + "]"

    def _encoded_all(self) -> list[str]:
        if not self.steps and not any(_tool_shaped(turn) for turn in self.history):
            return each_once(_ENCODED, self._said(), _encoded, ENCODED_CAP)
        # A history with tool rounds: those messages carry more than (role, content).
        if len(_SHAPED) > ENCODED_CAP:
            _SHAPED.clear()
        out = [_encoded(("system", self.prompt))]
        for turn in _whole_rounds(self.history):
            key = _shape_key(turn)
            if key is None:
                plain = (turn.role, turn.content)
                found = _ENCODED.get(plain)
                if found is None:
                    found = _ENCODED[plain] = _encoded(plain)
                out.append(found)
                continue
            encoded = _SHAPED.get(key)
            if encoded is None:
                encoded = _SHAPED[key] = json.dumps(_tool_shaped(turn), ensure_ascii=False)
            out.append(encoded)
        out += [_encoded(("user", text)) for text in self.texts]
        out += [json.dumps(dict(step), ensure_ascii=False) for step in self.steps]
        return out


def _encoded(said: tuple[str, str]) -> str:
    return json.dumps({"role": said[0], "content": said[1]}, ensure_ascii=False)


def _metadata(turn: Said) -> Mapping[str, Any]:
    found = getattr(turn, "metadata", None)
    return found if isinstance(found, Mapping) else {}


def _tool_shaped(turn: Said) -> dict[str, Any] | None:
    """The OpenAI shape of a stored tool round's message (an assistant message with
    `tool_calls`, or a `tool` result), else None (a plain message)."""
    meta = _metadata(turn)
    if turn.role == "tool":
        return {
            "role": "tool",
            "tool_call_id": str(meta.get("tool_call_id", "")),
            "content": turn.content,
        }
    calls = meta.get("tool_calls")
    if turn.role == "assistant" and calls:
        return {"role": "assistant", "content": turn.content or None, "tool_calls": list(calls)}
    return None


def _shape_key(turn: Said) -> tuple[Any, ...] | None:
    """What a tool round's message is encoded from (None: a plain message), as a key."""
    meta = _metadata(turn)
    if turn.role == "tool":
        return ("tool", turn.content, str(meta.get("tool_call_id", "")))
    calls = meta.get("tool_calls")
    if turn.role == "assistant" and calls:
        return (
            "calls",
            turn.content,
            tuple((c.get("id"), str(c.get("function"))) for c in calls if isinstance(c, Mapping)),
        )
    return None


# A tool round's message (its key) -> its JSON; emptied when it outgrows ENCODED_CAP.
_SHAPED: dict[tuple[Any, ...], str] = {}


def _whole_rounds(history: Sequence[Said]) -> list[Said]:
    """`history` without tool messages cut from their call (the store's message cap can
    trim a context inside a turn): a `tool` message is sent only after the assistant
    message that asked for it, and an assistant's calls only with all their results."""
    out: list[Said] = []
    i = 0
    while i < len(history):
        turn = history[i]
        calls = _metadata(turn).get("tool_calls") if turn.role == "assistant" else None
        if turn.role == "tool":
            i += 1  # an orphaned result: its call was trimmed away
            continue
        if calls:
            wanted = {str(c.get("id")) for c in calls if isinstance(c, Mapping)}
            j = i + 1
            while j < len(history) and history[j].role == "tool":
                j += 1
            got = {str(_metadata(t).get("tool_call_id")) for t in history[i + 1 : j]}
            if wanted <= got:
                out.extend(history[i:j])
            i = j
            continue
        out.append(turn)
        i += 1
    return out


# (role, content) -> that message's JSON; emptied when it outgrows the cap.
ENCODED_CAP = 50_000
_ENCODED: dict[tuple[str, str], str] = {}


class ModelAdapter(Protocol):
    """Turns a `ChatRequest` into the reply, as pieces."""

    def pieces(
        self, request: ChatRequest, *, stream: bool, usage: CallUsage | None = None
    ) -> AsyncIterator[str]:
        """The reply: piece by piece as produced when `stream`, else in one piece.

        When the provider reports token usage it is written into `usage`. Failures are
        `ModelError` / `ModelUnavailable`; nothing else escapes.
        """
        ...
