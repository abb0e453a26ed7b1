"""Model adapters: the built-in `echo` model and OpenAI-compatible chat completions."""

from secretaries_core.llm.base import ChatRequest, ChatTurn, ModelAdapter
from secretaries_core.llm.providers import build_adapter, parse_model, validate_model

__all__ = [
    "ChatRequest",
    "ChatTurn",
    "ModelAdapter",
    "build_adapter",
    "parse_model",
    "validate_model",
]
