"""What every model adapter offers."""

from __future__ import annotations

import json
import weakref
from collections import OrderedDict
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
        said = [("system", self.prompt), *(("user", text) for text in self.texts)]
        system, *texts = each_once(_ENCODED, said, _encoded, ENCODED_CAP)
        out = [system, *_history_texts(self.history), *texts]
        out += [json.dumps(dict(step), ensure_ascii=False) for step in self.steps]
        return out


# id(history) -> (the history, its length, its messages' JSON texts), the newest
# HISTORIES_CAP: a turn's tool rounds send the same fitted history with every round, and
# walking it message by message again cost a round more than the JSON of its new steps.
HISTORIES_CAP = 256
_HISTORIES: OrderedDict[int, tuple[Sequence[Any], int, list[str]]] = OrderedDict()


def _history_texts(history: Sequence[Said]) -> list[str]:
    """The history's messages as sent (JSON texts), in whole tool rounds."""
    key = id(history)
    found = _HISTORIES.get(key)
    if found is not None and found[0] is history and found[1] == len(history):
        return found[2]
    encodings = [_encoding(turn) for turn in history]
    # A history with tool rounds is sent in whole rounds (see `_whole_rounds`).
    if any(e.shaped for e in encodings):
        encodings = _whole_rounds(encodings)
    texts = [e.text for e in encodings]
    _HISTORIES[key] = (history, len(history), texts)
    if len(_HISTORIES) > HISTORIES_CAP:
        _HISTORIES.popitem(last=False)
    return texts


def _encoded(said: tuple[str, str]) -> str:
    return json.dumps({"role": said[0], "content": said[1]}, ensure_ascii=False)


def _metadata(turn: Said) -> Mapping[str, Any]:
    found = getattr(turn, "metadata", None)
    return found if isinstance(found, Mapping) else {}


@dataclass(frozen=True, slots=True)
class _Encoding:
    """One history message as it is sent, and what keeps a tool round whole."""

    text: str  # its JSON
    shaped: bool  # a tool round's message (more than role and content)
    calls: frozenset[str] | None = None  # an assistant's `tool_calls` ids
    answers: str | None = None  # a `tool` result: the call id it answers


def _encode(turn: Said) -> _Encoding:
    meta = _metadata(turn)
    if turn.role == "tool":
        answers = str(meta.get("tool_call_id", ""))
        shape: dict[str, Any] = {"role": "tool", "tool_call_id": answers, "content": turn.content}
        # The cut in `_whole_rounds` compares with the id as stored (None when missing).
        return _Encoding(
            json.dumps(shape, ensure_ascii=False), True, answers=str(meta.get("tool_call_id"))
        )
    calls = meta.get("tool_calls")
    if turn.role == "assistant" and calls:
        shape = {"role": "assistant", "content": turn.content or None, "tool_calls": [*calls]}
        ids = frozenset(str(c.get("id")) for c in calls if isinstance(c, Mapping))
        return _Encoding(json.dumps(shape, ensure_ascii=False), True, calls=ids)
    # A plain message by its (role, content): copies of one message share its JSON.
    return _Encoding(
        each_once(_ENCODED, [(turn.role, turn.content)], _encoded, ENCODED_CAP)[0], False
    )


# id(message) -> (a weak reference to it, its encoding): a stored message is encoded once
# while it lives (the stores hand out the same objects while a context is unchanged),
# and its entry leaves with it. A history is sent again on every message of its user:
# re-deriving each message's shape on every request grew its CPU with the history.
_BY_MESSAGE: dict[int, tuple[weakref.ref[Any], _Encoding]] = {}


def _encoding(turn: Said) -> _Encoding:
    key = id(turn)
    found = _BY_MESSAGE.get(key)
    if found is not None and found[0]() is turn:
        return found[1]
    encoding = _encode(turn)

    def forget(_gone: weakref.ref[Any]) -> None:
        _BY_MESSAGE.pop(key, None)

    try:
        ref = weakref.ref(turn, forget)
    except TypeError:  # an object that takes no weak reference: encoded on each use
        return encoding
    _BY_MESSAGE[key] = (ref, encoding)
    return encoding


def _whole_rounds(history: Sequence[_Encoding]) -> list[_Encoding]:
    """`history` without tool messages cut from their call (the store's message cap can
    trim a context inside a turn): a `tool` message is sent only after the assistant
    message that asked for it, and an assistant's calls only with all their results."""
    out: list[_Encoding] = []
    i = 0
    while i < len(history):
        turn = history[i]
        if turn.answers is not None:
            i += 1  # an orphaned result: its call was trimmed away
            continue
        if turn.calls is not None:
            j = i + 1
            while j < len(history) and history[j].answers is not None:
                j += 1
            if turn.calls <= {t.answers for t in history[i + 1 : j]}:
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
