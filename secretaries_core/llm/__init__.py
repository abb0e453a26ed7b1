"""Model adapters: the built-in `echo` model and OpenAI-compatible chat completions."""

from secretaries_core.llm.base import ChatTurn, ModelAdapter
from secretaries_core.llm.providers import build_adapter, parse_model, validate_model

__all__ = ["ChatTurn", "ModelAdapter", "build_adapter", "parse_model", "validate_model"]
