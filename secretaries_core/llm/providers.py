"""Which adapter a `model` string selects, checked when a secretary is created or updated."""

from __future__ import annotations

from secretaries_core.errors import InvalidInput
from secretaries_core.llm.base import ModelAdapter
from secretaries_core.llm.openai_client import OpenAIClients

PROVIDERS = ("echo", "openai")


def parse_model(model: str) -> tuple[str, str]:
    """`echo` → (echo, echo); `openai/gpt-4o-mini` → (openai, gpt-4o-mini).

    A name with no provider prefix (`gpt-4o-mini`, `llama3`) goes to the OpenAI-compatible
    provider, the one every local server speaks. An unknown prefix is `InvalidInput`.
    """
    model = model.strip()
    if model == "echo":
        return "echo", "echo"
    provider, sep, name = model.partition("/")
    if not sep:
        return "openai", model
    if provider not in PROVIDERS or not name:
        raise InvalidInput(
            f"unknown model provider in {model!r}: use `echo` or `openai/<model>` "
            "(an OpenAI-compatible server set by SECRETARIES_OPENAI_BASE_URL)"
        )
    return provider, name


def validate_model(model: str) -> None:
    """Raise `InvalidInput` now for a model string no adapter can serve."""
    parse_model(model)


def build_adapter(model: str, clients: OpenAIClients) -> ModelAdapter:
    """A ready adapter for `model` (no network until the first call)."""
    provider, name = parse_model(model)
    if provider == "echo":
        from secretaries_core.llm.echo import EchoAdapter

        return EchoAdapter()
    from secretaries_core.llm.openai_client import OpenAIAdapter

    return OpenAIAdapter(name, clients)
