"""Model strings and the params that name more models: parsing only, nothing loaded.

Kept apart from the clients (`providers.py`, `fallback.py` import asyncio and the HTTP
client) so that the catalog's checks of a model string cost no more than the check.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from secretaries_core.errors import InvalidInput

BUILT_IN = ("echo", "openai")
PROVIDER_NAME_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")


@dataclass(frozen=True)
class Provider:
    """A named OpenAI-compatible server; the key is read from `api_key_env` at use."""

    name: str
    base_url: str
    api_key_env: str | None = None


def parse_model(model: str) -> tuple[str, str]:
    """`echo` → (echo, echo); `NAME/model` → (NAME, model); `model` → (openai, model)."""
    model = model.strip()
    if model == "echo":
        return "echo", "echo"
    provider, sep, name = model.partition("/")
    if not sep:
        return "openai", model
    if not PROVIDER_NAME_RE.fullmatch(provider) or not name:
        raise InvalidInput(
            f"bad model {model!r}: use `echo`, `openai/<model>` or `<provider>/<model>`",
            hint=" with a provider from `secretaries providers list`",
        )
    return provider, name


def validate_model(model: str, known: Iterable[str] | None = None) -> None:
    """Raise `InvalidInput` now for a model string no adapter can serve.

    `known`: the named providers in the database (the built-in ones are always known).
    """
    provider, _name = parse_model(model)
    names = set(BUILT_IN) | set(known or ())
    if provider not in names:
        raise InvalidInput(
            f"unknown model provider {provider!r} in {model!r}: use one of "
            f"{', '.join(sorted(names))}",
            hint=f", or add it with `secretaries providers add {provider} --base-url URL`",
        )


PARAM_FALLBACKS = "fallback_models"
PARAM_CONTEXT_FALLBACK = "context_fallback_model"


def fallback_models(params: object) -> list[str]:
    """The `fallback_models` param as a list of model strings."""
    raw = params.get(PARAM_FALLBACKS) if isinstance(params, dict) else None
    if not raw:
        return []
    items = raw if isinstance(raw, list) else str(raw).split(",")
    return [str(m).strip() for m in items if str(m).strip()]


def models_of(model: str, params: object) -> list[str]:
    """Every model string a secretary's content uses: its model and its fallbacks."""
    found = [model, *fallback_models(params)]
    extra = params.get(PARAM_CONTEXT_FALLBACK) if isinstance(params, dict) else None
    if isinstance(extra, str) and extra.strip():
        found.append(extra.strip())
    return found
