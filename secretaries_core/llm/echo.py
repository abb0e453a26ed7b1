"""The built-in offline model: deterministic replies for demos and tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from secretaries_core.llm.base import ChatTurn


class EchoAdapter:
    """Replies by naming the secretary, echoing the text and counting the context."""

    def complete(
        self,
        *,
        secretary: str,
        prompt: str,
        history: Sequence[ChatTurn],
        text: str,
        params: Mapping[str, Any],
    ) -> str:
        """`[<secretary>] <text> (context: <n> messages)`."""
        return f"[{secretary}] {text} (context: {len(history)} messages)"

    def close(self) -> None:
        """Nothing to release."""
