"""Model adapters: the built-in `echo` model and OpenAI-compatible chat completions.

Exported lazily: the provider table (`providers_table`) is read by commands that never
call a model, and must not load the HTTP client to do it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from secretaries_core._lazy import lazy_exports

_EXPORTS = {
    "ChatRequest": "secretaries_core.llm.base",
    "ChatTurn": "secretaries_core.llm.base",
    "ModelAdapter": "secretaries_core.llm.base",
    "build_adapter": "secretaries_core.llm.providers",
    "parse_model": "secretaries_core.llm.providers",
    "validate_model": "secretaries_core.llm.providers",
}

__all__ = [
    "ChatRequest",
    "ChatTurn",
    "ModelAdapter",
    "build_adapter",
    "parse_model",
    "validate_model",
]

__getattr__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from secretaries_core.llm.base import ChatRequest, ChatTurn, ModelAdapter
    from secretaries_core.llm.providers import build_adapter, parse_model, validate_model
