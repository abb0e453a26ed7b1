"""What every model adapter offers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class ChatTurn:
    """One earlier message handed to the model: `role` is user or assistant."""

    role: str
    content: str


class ModelAdapter(Protocol):
    """Turns (system prompt, history, new message, params) into a reply."""

    def complete(
        self,
        *,
        secretary: str,
        prompt: str,
        history: Sequence[ChatTurn],
        text: str,
        params: Mapping[str, Any],
    ) -> str:
        """The model's reply to `text`, given the prompt and the earlier turns."""
        ...

    def close(self) -> None:
        """Release anything the adapter holds (connections)."""
        ...
