"""Secretary instances and the bounded pool that keeps them (LRU capacity + idle expiry)."""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from secretaries_core.context.base import ContextPolicy
from secretaries_core.llm.base import CallUsage, ChatRequest, ModelAdapter, Said
from secretaries_core.plumbing.metrics import Metrics

PARAM_INSTANCE_MODE = "instance_mode"
SUMMARY_HEADING = "Summary of the earlier conversation:"


def with_summary(prompt: str, summary: str | None) -> str:
    """The system message: the secretary's prompt, then the running summary if there is one."""
    if not summary:
        return prompt
    return f"{prompt}\n\n{SUMMARY_HEADING}\n{summary}"


@dataclass(frozen=True)
class SecretarySnapshot:
    """What the hot path needs of a secretary, copied out of the database row."""

    id: uuid.UUID
    name: str
    model: str
    prompt: str
    params: Mapping[str, Any]
    version: int


@dataclass
class SecretaryInstance:
    """A ready-to-call secretary: its prompt, model adapter, parameters and context policy.

    In `per-user` mode `state` is private to one user (adapters that keep per-user state
    put it there); in `shared` mode one instance serves everyone and holds no user data.
    """

    secretary: SecretarySnapshot
    adapter: ModelAdapter
    policy: ContextPolicy
    user_id: int | None = None
    state: dict[str, Any] = field(default_factory=dict)
    closed: bool = False

    def request(
        self,
        history: Sequence[Said],
        texts: Sequence[str],
        *,
        summary: str | None = None,
        tools: Sequence[Mapping[str, Any]] = (),
        tool_choice: str | None = None,
        steps: Sequence[Mapping[str, Any]] = (),
    ) -> ChatRequest:
        """The model call for `texts` (oldest first) after `history` (and its `summary`),
        offering `tools`, after this turn's tool rounds so far (`steps`)."""
        return ChatRequest(
            secretary=self.secretary.name,
            prompt=with_summary(self.secretary.prompt, summary),
            history=history,
            texts=texts,
            params=self.secretary.params,
            tools=tools,
            tool_choice=tool_choice,
            steps=steps,
        )

    def reply(
        self, request: ChatRequest, *, stream: bool, usage: CallUsage | None = None
    ) -> AsyncIterator[str]:
        """The model's reply to `request`, in pieces (token usage into `usage` if reported)."""
        return self.adapter.pieces(request, stream=stream, usage=usage)

    def close(self) -> None:
        """Forget per-user state; the pool calls this when it evicts the instance.

        Connections are not the instance's: the orchestrator's model clients are shared.
        """
        if not self.closed:
            self.closed = True
            self.state.clear()


PoolKey = tuple[uuid.UUID, int, int | None]
Factory = Callable[[SecretarySnapshot, int | None], SecretaryInstance]


class InstancePool:
    """Instances keyed by (secretary, version, user or None), bounded by count and idleness.

    Thread-safe (one lock; building an instance is cheap and does no I/O). Least recently
    used entries come first, so evicting the idle ones stops at the first fresh entry.
    Building version N of a secretary closes its instances of older versions.
    """

    def __init__(
        self,
        factory: Factory,
        *,
        capacity: int,
        idle_seconds: float,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.factory = factory
        self.capacity = capacity
        self.idle_seconds = idle_seconds
        self.metrics = metrics or Metrics()
        self.clock = clock
        self._entries: OrderedDict[PoolKey, tuple[SecretaryInstance, float]] = OrderedDict()
        self._latest: dict[uuid.UUID, int] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, secretary: SecretarySnapshot, user_id: int | None) -> SecretaryInstance:
        """The instance for `secretary` (and `user_id` in per-user mode), built on a miss."""
        key = (secretary.id, secretary.version, user_id)
        now = self.clock()
        evicted: list[tuple[SecretaryInstance, str]] = []
        with self._lock:
            evicted += self._expire_idle(now)
            found = self._entries.get(key)
            if found is not None:
                self._entries[key] = (found[0], now)
                self._entries.move_to_end(key)
                self.metrics.pool_hits.inc()
                instance = found[0]
            else:
                self.metrics.pool_misses.inc()
                if secretary.version > self._latest.get(secretary.id, 0):
                    self._latest[secretary.id] = secretary.version
                    evicted += self._drop(
                        lambda k: k[0] == secretary.id and k[1] < secretary.version, "version"
                    )
                instance = self.factory(secretary, user_id)
                self._entries[key] = (instance, now)
                while len(self._entries) > self.capacity:
                    _, (old, _) = self._entries.popitem(last=False)
                    evicted.append((old, "capacity"))
            self.metrics.pool_size.set(len(self._entries))
        self._close(evicted)
        return instance

    def evict_secretary(self, secretary_id: uuid.UUID) -> int:
        """Close every instance of one secretary (deactivation, deletion)."""
        with self._lock:
            evicted = self._drop(lambda k: k[0] == secretary_id, "secretary")
            self.metrics.pool_size.set(len(self._entries))
        self._close(evicted)
        return len(evicted)

    def sweep(self) -> int:
        """Close instances idle longer than `idle_seconds`; returns how many."""
        with self._lock:
            evicted = self._expire_idle(self.clock())
            self.metrics.pool_size.set(len(self._entries))
        self._close(evicted)
        return len(evicted)

    def evict_all(self) -> int:
        """Close every instance, the pool staying usable (providers changed)."""
        with self._lock:
            evicted = self._drop(lambda _k: True, "providers")
            self.metrics.pool_size.set(0)
        self._close(evicted)
        return len(evicted)

    def close(self) -> None:
        """Close every instance."""
        with self._lock:
            evicted = self._drop(lambda _k: True, "shutdown")
            self.metrics.pool_size.set(0)
        self._close(evicted)

    def _expire_idle(self, now: float) -> list[tuple[SecretaryInstance, str]]:
        evicted = []
        while self._entries:
            key, (instance, last_used) = next(iter(self._entries.items()))
            if now - last_used <= self.idle_seconds:
                break
            del self._entries[key]
            evicted.append((instance, "idle"))
        return evicted

    def _drop(
        self, matches: Callable[[PoolKey], bool], reason: str
    ) -> list[tuple[SecretaryInstance, str]]:
        keys = [k for k in self._entries if matches(k)]
        return [(self._entries.pop(k)[0], reason) for k in keys]

    def _close(self, evicted: list[tuple[SecretaryInstance, str]]) -> None:
        # Outside the lock: an adapter's close may take time.
        for instance, reason in evicted:
            self.metrics.pool_evictions.labels(reason=reason).inc()
            instance.close()
