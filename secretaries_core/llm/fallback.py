"""Stage "ask", continued: a secretary's fallback chain and a circuit breaker per provider.

A secretary's `fallback_models` param (comma-separated model strings) is tried in order
when the model before it is unavailable (connection error, timeout, 429, 5xx), within the
same message deadline: each model but the last gets an equal share of it to produce its
first piece. A fallback happens only before the first piece (what was shown cannot be
taken back). `context_fallback_model` is tried once when the input is too long for every
model of the chain.

A provider that keeps failing is skipped for a cool-down (`CircuitBreaker`): after
`failures` consecutive failures its circuit opens for `cooldown` seconds; then one call is
let through (half-open) and a success closes it. A chain whose every circuit is open
still tries its last model, so a message is never refused without an attempt.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from threading import Lock

from secretaries_core.errors import ModelUnavailable
from secretaries_core.llm.base import CallUsage, ChatRequest, ModelAdapter
from secretaries_core.llm.model_names import PARAM_CONTEXT_FALLBACK as PARAM_CONTEXT_FALLBACK
from secretaries_core.llm.model_names import PARAM_FALLBACKS as PARAM_FALLBACKS
from secretaries_core.llm.model_names import fallback_models as fallback_models
from secretaries_core.llm.openai_client import ContextTooLong
from secretaries_core.llm.providers import parse_model


class CircuitBreaker:
    """Per provider: closed → (N failures) open → (cool-down) half-open → closed."""

    def __init__(
        self, failures: int = 3, cooldown: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failures = failures
        self.cooldown = cooldown
        self.clock = clock
        self._failed: dict[str, int] = {}
        self._opened: dict[str, float] = {}
        self._trial: set[str] = set()
        self._lock = Lock()

    def allows(self, provider: str) -> bool:
        """True when a call may go to `provider` now (closed, or its half-open trial)."""
        with self._lock:
            opened = self._opened.get(provider)
            if opened is None:
                return True
            if self.clock() - opened < self.cooldown or provider in self._trial:
                return False
            self._trial.add(provider)  # half-open: this one call decides
            return True

    def succeeded(self, provider: str) -> None:
        """A call worked: close the circuit."""
        with self._lock:
            self._failed.pop(provider, None)
            self._opened.pop(provider, None)
            self._trial.discard(provider)

    def failed(self, provider: str) -> None:
        """A call failed as unavailable: count it; open (again) at the threshold."""
        with self._lock:
            count = self._failed.get(provider, 0) + 1
            self._failed[provider] = count
            if count >= self.failures or provider in self._trial:
                self._opened[provider] = self.clock()
                self._trial.discard(provider)

    def is_open(self, provider: str) -> bool:
        """For metrics and tests."""
        with self._lock:
            return provider in self._opened


@dataclass(frozen=True)
class Link:
    """One model of a chain."""

    model: str
    adapter: ModelAdapter

    @property
    def provider(self) -> str:
        """The model's provider name."""
        return parse_model(self.model)[0]


class FallbackAdapter:
    """An adapter over a chain of models: the first that answers wins."""

    def __init__(
        self,
        chain: list[Link],
        breaker: CircuitBreaker,
        *,
        deadline: float,
        on_fallback: Callable[[str, str], None] | None = None,
        context_fallback: Link | None = None,
    ) -> None:
        self.chain = chain
        self.breaker = breaker
        self.deadline = deadline
        self.on_fallback = on_fallback
        self.context_fallback = context_fallback

    async def pieces(
        self, request: ChatRequest, *, stream: bool, usage: CallUsage | None = None
    ) -> AsyncIterator[str]:
        """The first model's reply that comes; see the module docstring."""
        started = time.monotonic()
        last_error: Exception | None = None
        tried: str | None = None
        candidates = [
            link
            for i, link in enumerate(self.chain)
            if i == len(self.chain) - 1 or self.breaker.allows(link.provider)
        ]
        too_long = 0
        for i, link in enumerate(candidates):
            if tried is not None and self.on_fallback is not None:
                self.on_fallback(tried, link.model)
            tried = link.model
            left = self.deadline - (time.monotonic() - started)
            share = left if i == len(candidates) - 1 else left / (len(candidates) - i)
            produced = False
            pieces = link.adapter.pieces(request, stream=stream, usage=usage)
            try:
                try:
                    first = await asyncio.wait_for(anext(pieces), timeout=max(share, 0.001))
                except TimeoutError:
                    raise ModelUnavailable(
                        f"{link.model}: no first piece within its {share:.1f}s share"
                    ) from None
                except StopAsyncIteration:
                    first = None
                if usage is not None:
                    usage.model = link.model
                if first is not None:
                    produced = True
                    yield first
                    async for piece in pieces:
                        yield piece
                self.breaker.succeeded(link.provider)
                return
            except ContextTooLong:
                # Too long is about the input, not the provider: no other model of the
                # chain, only the one named for it (else the caller retries with less).
                if produced or self.context_fallback is None:
                    raise
                too_long += 1
                break
            except ModelUnavailable as exc:
                self.breaker.failed(link.provider)
                last_error = exc
                if produced:
                    raise
            finally:
                await pieces.aclose()  # type: ignore[attr-defined]
        if too_long and self.context_fallback is not None:
            if self.on_fallback is not None and tried is not None:
                self.on_fallback(tried, self.context_fallback.model)
            if usage is not None:
                usage.model = self.context_fallback.model
            async for piece in self.context_fallback.adapter.pieces(
                request, stream=stream, usage=usage
            ):
                yield piece
            return
        if last_error is None:
            raise ModelUnavailable("no model of the chain could be asked")
        raise last_error
