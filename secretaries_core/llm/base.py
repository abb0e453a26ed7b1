"""What every model adapter offers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
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

    def _said(self) -> list[tuple[str, str]]:
        """(role, content) of every message: the system prompt, the history, the texts."""
        said = [("system", self.prompt)]
        said += [(turn.role, turn.content) for turn in self.history]
        said += [("user", text) for text in self.texts]
        return said

    def messages(self) -> list[dict[str, str]]:
        """The chat-completions `messages` list."""
        return [{"role": role, "content": content} for role, content in self._said()]

    def messages_json(self) -> str:
        """`messages()` as JSON text, each message encoded once per process.

        The same history goes out again on every message of its user: encoding it anew
        was most of what a request's CPU still grew by with the history.
        """
        return "[" + ", ".join(each_once(_ENCODED, self._said(), _encoded, ENCODED_CAP)) + "]"


def _encoded(said: tuple[str, str]) -> str:
    return json.dumps({"role": said[0], "content": said[1]}, ensure_ascii=False)


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
