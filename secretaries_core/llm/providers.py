"""Which provider and adapter a `model` string selects, and the clients of every provider.

Model strings: `echo` (the built-in echo), `NAME/model` (a provider: `openai` is the one
configured by `SECRETARIES_OPENAI_BASE_URL`; others are added with `secretaries providers
add`), or a bare `model` (the `openai` provider: the OpenAI-compatible server every local
model server speaks).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from threading import Lock

from secretaries_core.errors import InvalidInput
from secretaries_core.llm.base import ModelAdapter
from secretaries_core.llm.model_names import BUILT_IN as BUILT_IN
from secretaries_core.llm.model_names import PROVIDER_NAME_RE as PROVIDER_NAME_RE
from secretaries_core.llm.model_names import Provider as Provider
from secretaries_core.llm.model_names import parse_model as parse_model
from secretaries_core.llm.model_names import validate_model as validate_model
from secretaries_core.llm.openai_client import OpenAIClients

PROVIDERS = BUILT_IN  # kept for callers of the earlier, fixed list


class ProviderClients:
    """One `OpenAIClients` per provider (a connection pool per provider per event loop)."""

    def __init__(
        self,
        default: OpenAIClients,
        lookup: Callable[[str], Provider | None],
        *,
        env: Callable[[str], str | None] = os.environ.get,
    ) -> None:
        self.default = default
        self.lookup = lookup
        self.env = env
        self._named: dict[str, OpenAIClients] = {}
        self._lock = Lock()

    def get(self, provider: str) -> OpenAIClients:
        """The clients of `provider` (made on first use from its row)."""
        if provider == "openai":
            return self.default
        with self._lock:
            found = self._named.get(provider)
        if found is not None:
            return found
        row = self.lookup(provider)
        if row is None:
            raise InvalidInput(
                f"unknown model provider {provider!r}", hint="; see `secretaries providers`"
            )
        key = self.env(row.api_key_env) if row.api_key_env else None
        # The scrubber learns the key before it is ever sent: a provider that repeats it
        # in an error cannot put it into a log, a reply or a dead letter.
        from secretaries_core.redact import remember

        remember([key])
        made = OpenAIClients(
            base_url=row.base_url.rstrip("/"),
            api_key=key,
            timeout=self.default.timeout,
            max_retries=self.default.max_retries,
            max_connections=self.default.max_connections,
        )
        with self._lock:
            return self._named.setdefault(provider, made)

    def forget(self, provider: str) -> None:
        """Drop a provider's clients (its row changed or was removed)."""
        with self._lock:
            gone = self._named.pop(provider, None)
        if gone is not None:
            gone.close()

    def forget_all(self) -> None:
        """Drop every named provider's clients (the provider table changed)."""
        with self._lock:
            names = list(self._named)
        for name in names:
            self.forget(name)

    async def aclose(self) -> None:
        """Close the running loop's clients of every provider."""
        await self.default.aclose()
        for clients in list(self._named.values()):
            await clients.aclose()

    def close(self) -> None:
        """Close every provider's clients."""
        self.default.close()
        for clients in list(self._named.values()):
            clients.close()


def build_adapter(model: str, clients: OpenAIClients | ProviderClients) -> ModelAdapter:
    """A ready adapter for `model` (no network until the first call)."""
    provider, name = parse_model(model)
    if provider == "echo":
        from secretaries_core.llm.echo import EchoAdapter

        return EchoAdapter()
    from secretaries_core.llm.openai_client import OpenAIAdapter

    if isinstance(clients, ProviderClients):
        return OpenAIAdapter(name, clients.get(provider))
    if provider != "openai":
        raise InvalidInput(f"unknown model provider {provider!r}")
    return OpenAIAdapter(name, clients)
