"""What the routes call: the registry, the context store and the orchestrator."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from fastapi import Request

from secretaries_core.catalog.api_tokens import ApiTokens
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.config import Settings
from secretaries_core.context import ContextStore, open_context_store, sqlite_lane
from secretaries_core.errors import BackendUnavailable, InvalidInput, NotFound, SecretariesError
from secretaries_core.orchestrator import Orchestrator
from secretaries_core.plumbing.schema import open_database
from secretaries_core.queue.client import Queue
from secretaries_core.tools.calling import ToolCaller


@dataclass
class Services:
    """The library objects one API process uses."""

    settings: Settings
    registry: SecretaryRegistry
    contexts: ContextStore
    orchestrator: Orchestrator
    _queue: Any = None
    _webhook: Any = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        """Open the database (checked at head) and the context store of `settings`."""
        engine = open_database(settings)
        registry = SecretaryRegistry(engine)
        contexts = open_context_store(
            settings.context_url,
            policy=settings.context_policy,
            engine=None if settings.context_url else engine,
            prefix=settings.redis_prefix,
            remember=settings.redis_remember_contexts,
        )
        return cls(settings, registry, contexts, Orchestrator(registry, contexts, settings))

    @cached_property
    def tool_caller(self) -> ToolCaller:
        """This process's tool calls (and its open MCP sessions)."""
        return ToolCaller(self.settings.tool_result_chars)

    @cached_property
    def tokens(self) -> ApiTokens:
        """The scoped API tokens of the database."""
        return ApiTokens(self.registry.engine)

    @cached_property
    def reads_on_loop(self) -> bool:
        """True when the database is a SQLite file: its reads run on the loop (a WAL reader
        never waits, and a hop to a thread cost more than the read)."""
        return sqlite_lane.usable(self.registry.engine)

    def queue(self) -> Any:
        """The workers' queue (opened on first use).

        A server started without a Redis URL is misconfigured, which no request can fix:
        `BackendUnavailable` (503), not a client error.
        """
        if self._queue is None:
            try:
                self._queue = Queue.from_settings(self.settings)
            except InvalidInput as exc:
                raise BackendUnavailable(f"this server has no queue: {exc}") from None
        return self._queue

    def webhook(self) -> Any:
        """Telegram's webhook ingress (the `telegram` extra; made on first use).

        Needs `SECRETARIES_TELEGRAM_TOKEN` and `SECRETARIES_TELEGRAM_WEBHOOK_SECRET` (without
        them this server takes no webhook: `NotFound`, 404) and the queue (503 without it).
        """
        if self._webhook is None:
            token, secret = self.settings.telegram_token, self.settings.telegram_webhook_secret
            if not token or not secret:
                missing = "SECRETARIES_TELEGRAM_TOKEN" if not token else ""
                missing = missing or "SECRETARIES_TELEGRAM_WEBHOOK_SECRET"
                raise NotFound(f"this server takes no Telegram webhook: {missing} is unset")
            queue = self.queue()
            try:
                from secretaries_telegram.webhook import WebhookIngress
            except ImportError as exc:
                raise BackendUnavailable(
                    f"the Telegram front is not installed ({exc.name}): "
                    "pip install 'secretaries-platform[api,telegram]'"
                ) from None
            self._webhook = WebhookIngress(
                self.orchestrator,
                queue,
                token=token,
                secret=secret,
                api_url=self.settings.telegram_api_url,
            )
        return self._webhook

    def warm_webhook(self) -> None:
        """Build the webhook ingress at start-up when this server takes the webhook.

        Telegram waits a few seconds for a webhook's answer, and the first update must not
        be the one that pays for importing the Telegram front (seconds on a loaded
        machine). A server without the token, the secret or the queue is left as it is:
        its requests get the refusal `webhook()` gives.
        """
        try:
            self.webhook()
        except SecretariesError:
            return

    def close(self) -> None:
        """Release everything once the server's event loop has ended."""
        self.orchestrator.close()
        self.contexts.close()
        self.registry.engine.dispose()

    async def aclose(self) -> None:
        """Release model clients, pooled instances and connections (from the server's loop)."""
        if self._webhook is not None:
            await self._webhook.aclose()
        await self.orchestrator.aclose()
        await self.contexts.aclose()
        if "tool_caller" in self.__dict__:
            await self.tool_caller.aclose()
        if self._queue is not None:
            await self._queue.aclose()
            self._queue.close()
        self.contexts.close()
        self.registry.engine.dispose()


async def services(request: Request) -> Services:
    """FastAPI dependency: the app's services (`async`: a plain `def` would hop to a thread)."""
    found: Services = request.app.state.services
    return found
