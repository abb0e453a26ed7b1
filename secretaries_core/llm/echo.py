"""The built-in offline model: deterministic replies for demos and tests."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from secretaries_core.llm.base import CallUsage, ChatRequest

_WORDS = re.compile(r"\S+\s*|\s+")


def echo_text(request: ChatRequest) -> str:
    """`[<secretary>] <text> (context: <n> messages)`, n counting every earlier message."""
    earlier = len(request.history) + len(request.texts) - 1
    return f"[{request.secretary}] {request.texts[-1]} (context: {earlier} messages)"


class EchoAdapter:
    """Replies by naming the secretary, echoing the text and counting the context."""

    async def pieces(
        self, request: ChatRequest, *, stream: bool, usage: CallUsage | None = None
    ) -> AsyncIterator[str]:
        """The whole reply at once, or word by word; reports no usage (it is estimated)."""
        text = echo_text(request)
        if not stream:
            yield text
            return
        for word in _WORDS.findall(text):
            yield word
            await asyncio.sleep(0)
