"""Prometheus metrics of one orchestrator, on its own registry (nothing process-global).

`Metrics(record=False)` keeps the same attributes but records nothing and never imports
prometheus-client (a tenth of `import sqlalchemy`): for a one-shot command, whose
metrics nobody can scrape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """Messages, resolutions, instance pool and model latency, by secretary where it matters."""

    def __init__(self, registry: CollectorRegistry | None = None, *, record: bool = True) -> None:
        Counter: Any
        Gauge: Any
        Histogram: Any
        if record:
            from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

            self.registry: CollectorRegistry | None = registry or CollectorRegistry()
        else:
            Counter = Gauge = Histogram = _Unrecorded
            self.registry = None
        r = self.registry
        self.messages = Counter(
            "secretaries_messages", "Messages handled, by secretary.", ["secretary"], registry=r
        )
        self.resolutions = Counter(
            "secretaries_resolutions",
            "Messages resolved to a secretary, by source (cached or not).",
            ["source"],
            registry=r,
        )
        self.resolution_cache_misses = Counter(
            "secretaries_resolution_cache_misses",
            "Resolutions that went to the database; hits = resolutions - misses.",
            registry=r,
        )
        self.pool_hits = Counter("secretaries_pool_hits", "Instance pool hits.", registry=r)
        self.pool_misses = Counter("secretaries_pool_misses", "Instance pool misses.", registry=r)
        self.pool_evictions = Counter(
            "secretaries_pool_evictions", "Instances evicted, by reason.", ["reason"], registry=r
        )
        self.pool_size = Gauge("secretaries_pool_size", "Instances in the pool.", registry=r)
        self.model_latency = Histogram(
            "secretaries_model_latency_seconds",
            "Time the model took to reply, by secretary.",
            ["secretary"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # Counter names end in _total on the wire (prometheus_client adds it).
        self.tool_calls = Counter(
            "secretaries_tool_calls",
            "Tool calls, by secretary, version, tool and outcome (ok, failed, reused, "
            "unknown, refused, skipped, declined).",
            ["secretary", "version", "tool", "outcome"],
            registry=r,
        )
        self.tool_seconds = Histogram(
            "secretaries_tool_seconds",
            "Time a tool call took, by tool.",
            ["tool"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.erased_unanswered = Counter(
            "secretaries_erased_unanswered",
            "Queued messages dropped unanswered because their user was erased.",
            registry=r,
        )
        self.errors = Counter(
            "secretaries_errors", "Failed messages, by error type.", ["type"], registry=r
        )
        self.tokens = Counter(
            "secretaries_tokens",
            "Tokens used, by secretary, model and kind (prompt or completion).",
            ["secretary", "model", "kind"],
            registry=r,
        )
        self.context_retries = Counter(
            "secretaries_context_retries",
            "Model calls retried with half the history after 'context too long'.",
            ["secretary"],
            registry=r,
        )
        self.summaries = Counter(
            "secretaries_summaries",
            "Running-summary updates, by outcome (ok, failed).",
            ["outcome"],
            registry=r,
        )
        self.version_messages = Counter(
            "secretaries_version_messages",
            "Messages answered, by secretary and version.",
            ["secretary", "version"],
            registry=r,
        )
        self.fallbacks = Counter(
            "secretaries_fallbacks",
            "Model calls that moved down a secretary's fallback chain.",
            ["secretary", "from", "to"],
            registry=r,
        )
        self.rollouts = Counter(
            "secretaries_rollouts",
            "Rollouts that ended by themselves, by secretary and outcome.",
            ["secretary", "outcome"],
            registry=r,
        )
        self.telegram_dropped = Counter(
            "secretaries_telegram_dropped",
            "Replies Telegram refused for good (blocked, chat not found), by reason.",
            ["reason"],
            registry=r,
        )
        self.flood_wait = Histogram(
            "secretaries_telegram_flood_wait_seconds",
            "How long a send to Telegram waited for the bot's flood control, by kind "
            "(final: a text that must go out; intermediate: a draft or streaming edit).",
            ["kind"],
            buckets=(0.0, 0.05, 0.25, 1.0, 2.5, 5.0, 15.0, 60.0),
            registry=r,
        )
        self.flood_waiting = Gauge(
            "secretaries_telegram_flood_waiting",
            "Sends of this process waiting for the bot's flood control right now.",
            registry=r,
        )
        self.flood_skipped = Counter(
            "secretaries_telegram_flood_skipped",
            "Intermediate drafts or edits skipped to stay within Telegram's limits "
            "(the next one, or the final text, carries what they would have shown).",
            registry=r,
        )
        self.flood_refused = Counter(
            "secretaries_telegram_429",
            "Sends Telegram refused with 429 Too Many Requests despite the flood control.",
            registry=r,
        )
        self.context_reads_remembered = Gauge(
            "secretaries_context_reads_remembered",
            "Context reads answered from memory since start (Redis client tracking; a "
            "running total, read at scrape time).",
            registry=r,
        )
        self.queue = Gauge(
            "secretaries_queue",
            "The workers' queue at scrape time: inbound, pending, dead_letters, replies, "
            "workers, oldest_pending_age_seconds.",
            ["what"],
            registry=r,
        )
        # Label children bound once: `labels()` takes a lock and a dict lookup per call,
        # which would dominate the cached-resolution hot path.
        self.by_source = {
            source: self.resolutions.labels(source=source)
            for source in ("assigned", "default", "fallback")
        }

    def observe_queue(self, stats: dict[str, object]) -> None:
        """Set the queue gauges from `Queue.stats()`."""
        for key, name in (
            ("inbound", "inbound"),
            ("pending", "pending"),
            ("dead_letters", "dead_letters"),
            ("replies", "replies"),
            ("workers", "workers"),
            ("oldest_pending_age_s", "oldest_pending_age_seconds"),
        ):
            value = stats.get(key)
            if isinstance(value, int | float):
                self.queue.labels(what=name).set(value)

    def serve(self, port: int, host: str) -> None:
        """Expose these metrics on http://HOST:PORT/metrics from a thread (a long-running
        process without the API: a worker, the bot)."""
        from prometheus_client import start_http_server

        if self.registry is not None:
            start_http_server(port, addr=host, registry=self.registry)

    def exposition(self) -> bytes:
        """The Prometheus text exposition of every metric here (empty when unrecorded)."""
        if self.registry is None:
            return b""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class _Unrecorded:
    """A counter, gauge or histogram that records nothing (`Metrics(record=False)`)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def labels(self, *args: object, **kwargs: object) -> _Unrecorded:
        """Itself: every child records nothing too."""
        return self

    def inc(self, amount: float = 1) -> None:
        """Nothing."""

    def dec(self, amount: float = 1) -> None:
        """Nothing."""

    def set(self, value: float) -> None:
        """Nothing."""

    def observe(self, amount: float) -> None:
        """Nothing."""
