"""A model adapter wrapped in a `chat {model}` span (used only when tracing is on)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from secretaries_core.llm.base import CallUsage, ChatRequest, ModelAdapter
from secretaries_core.plumbing import tracing


def _number(params: Any, name: str) -> float | None:
    value = params.get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class TracedAdapter:
    """`inner`, each call its own span with the GenAI request, usage and finish reason."""

    def __init__(self, inner: ModelAdapter, model: str) -> None:
        self.inner = inner
        self.model = model
        provider, _, name = model.partition("/")
        self.provider, self.name = (provider, name) if name else ("openai", model)

    async def pieces(
        self, request: ChatRequest, *, stream: bool, usage: CallUsage | None = None
    ) -> AsyncIterator[str]:
        """The inner adapter's pieces, inside a `chat {model}` span."""
        params = request.params
        span = tracing.start(
            f"chat {self.name}",
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": self.provider,
                "gen_ai.system": self.provider,
                "gen_ai.request.model": self.name,
                "secretaries.secretary": request.secretary,
                **{
                    f"gen_ai.request.{name}": value
                    for name in ("temperature", "top_p", "max_tokens")
                    if (value := _number(params, name)) is not None
                },
            },
        )
        capture = span is not None and tracing.capture_content()
        if capture:
            tracing.set_attributes(span, {"gen_ai.input.messages": request.messages_json()})
        counted = usage if usage is not None else CallUsage()
        said: list[str] = []
        try:
            async for piece in self.inner.pieces(request, stream=stream, usage=counted):
                if capture:
                    said.append(piece)
                yield piece
        except GeneratorExit:
            tracing.end(span)  # the caller stopped reading: not a failure of the model
            raise
        except BaseException as exc:
            tracing.end(span, exc)
            raise
        reasons = [
            "tool_calls" if counted.tool_calls else "length" if counted.truncated else "stop"
        ]
        tracing.set_attributes(
            span,
            {
                "gen_ai.response.model": self.name,
                "gen_ai.usage.input_tokens": counted.prompt_tokens,
                "gen_ai.usage.output_tokens": counted.completion_tokens,
                "gen_ai.response.finish_reasons": reasons,
            },
        )
        if capture:
            out = [{"role": "assistant", "content": "".join(said)}]
            tracing.set_attributes(span, {"gen_ai.output.messages": json.dumps(out)})
        tracing.end(span)
