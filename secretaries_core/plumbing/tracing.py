"""OpenTelemetry traces of the message path (extra `otel`), following the GenAI conventions.

A message is one trace: `secretaries.message` (`gen_ai.operation.name` "invoke_agent") with
a `chat {model}` span per model call — each fallback attempt its own — and an
`execute_tool {tool}` span per tool call, both its children. A queued message carries the
W3C `traceparent` of the API's `secretaries.enqueue` span in its stream entry, so the
worker's `secretaries.message` continues the API's trace.

Nothing is imported or recorded unless it is configured: `OTEL_EXPORTER_OTLP_ENDPOINT` (or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set in the environment (spans go to that OTLP/HTTP
collector through a batch processor), or a provider handed to `use_provider` (tests, or an
application that set up OpenTelemetry itself). Every function here is then a no-op that
costs one global read. Message contents are attached (`gen_ai.input.messages`,
`gen_ai.output.messages`) only with `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
from collections.abc import Coroutine, Iterator, Mapping
from typing import Any, TypeVar

T = TypeVar("T")
SCOPE = "secretaries"
CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_ENDPOINT_ENVS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")

# None: not decided yet; False: off; else the tracer.
_tracer: Any = None


def _configured_tracer() -> Any:
    """The tracer of an OTLP/HTTP exporter set up from the OTEL_* environment, or False."""
    if not any(os.environ.get(name) for name in _ENDPOINT_ENVS):
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        # Said once, never raised: a message must not fail for want of its trace.
        logging.getLogger(__name__).warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed (%s): "
            "pip install 'secretaries-platform[otel]'; not tracing",
            exc.name,
        )
        return False
    service = os.environ.get("OTEL_SERVICE_NAME") or "secretaries"
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider.get_tracer(SCOPE)


def tracer() -> Any:
    """The tracer, or None when tracing is not configured (decided once per process)."""
    global _tracer
    if _tracer is None:
        _tracer = _configured_tracer()
    return _tracer or None


def use_provider(provider: Any | None) -> None:
    """Trace into `provider` (an SDK `TracerProvider`); None: decide from the env again."""
    global _tracer
    _tracer = provider.get_tracer(SCOPE) if provider is not None else None


def capture_content() -> bool:
    """True when message contents may be attached to spans."""
    return os.environ.get(CAPTURE_ENV, "").strip().lower() == "true"


@contextlib.contextmanager
def span(
    name: str, attributes: Mapping[str, Any] | None = None, kind: str = "internal"
) -> Iterator[Any]:
    """A span made current for the block (None when tracing is off); an exception that
    leaves the block marks it failed with `error.type`."""
    found = tracer()
    if found is None:
        yield None
        return
    from opentelemetry.trace import SpanKind

    with found.start_as_current_span(
        name, kind=getattr(SpanKind, kind.upper()), attributes=dict(attributes or {})
    ) as current:
        try:
            yield current
        except BaseException as exc:
            failed(current, exc)
            raise


def start(name: str, attributes: Mapping[str, Any] | None = None, kind: str = "client") -> Any:
    """A span that is not made current (for async generators, whose body runs across
    contexts); end it with `end`. None when tracing is off."""
    found = tracer()
    if found is None:
        return None
    from opentelemetry.trace import SpanKind

    return found.start_span(
        name, kind=getattr(SpanKind, kind.upper()), attributes=dict(attributes or {})
    )


def failed(current: Any, exc: BaseException) -> None:
    """Mark `current` failed by `exc` (its type as `error.type`)."""
    if current is None:
        return
    from opentelemetry.trace import Status, StatusCode

    current.set_attribute("error.type", type(exc).__name__)
    current.set_status(Status(StatusCode.ERROR, str(exc)[:200]))


def end(current: Any, exc: BaseException | None = None) -> None:
    """End a span from `start`, failed by `exc` when given."""
    if current is None:
        return
    if exc is not None:
        failed(current, exc)
    current.end()


def set_attributes(current: Any, attributes: Mapping[str, Any]) -> None:
    """Add attributes to `current` (None values left out)."""
    if current is None:
        return
    current.set_attributes({k: v for k, v in attributes.items() if v is not None})


def traceparent() -> str:
    """The current span's W3C `traceparent`, or "" when tracing is off or no span is current."""
    if tracer() is None:
        return ""
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get("traceparent", "")


@contextlib.contextmanager
def continued(parent: str) -> Iterator[None]:
    """Make the span named by a `traceparent` the parent of the spans started in the block."""
    if not parent or tracer() is None:
        yield
        return
    from opentelemetry import context
    from opentelemetry.propagate import extract

    token = context.attach(extract({"traceparent": parent}))
    try:
        yield
    finally:
        context.detach(token)


def task_in(current: Any, coro: Coroutine[Any, Any, T]) -> Any:
    """`asyncio` task running `coro` with `current` as its parent span (or plainly)."""
    import asyncio

    if current is None:
        return asyncio.ensure_future(coro)
    from opentelemetry import context, trace

    ctx = contextvars.copy_context()
    ctx.run(context.attach, trace.set_span_in_context(current))
    return asyncio.get_running_loop().create_task(coro, context=ctx)


def current() -> Any:
    """The current span, or None when tracing is off."""
    if tracer() is None:
        return None
    from opentelemetry import trace

    return trace.get_current_span()
