"""Traces: the SDK's in-memory exporter under the library, a real OTLP/HTTP receiver under
real `serve` and `worker` processes, and nothing at all when tracing is not configured."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from secretaries_core.catalog.models import AssistantCreate
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.config import Settings
from secretaries_core.context.sql import SqlContextStore
from secretaries_core.orchestrator import Orchestrator
from secretaries_core.plumbing import schema, tracing
from secretaries_core.plumbing.db import make_engine
from secretaries_core.tools.registry import ToolRegistry
from secretaries_core.tools.spec import ToolSpec
from tests.llm_server import llm_server
from tests.servers import free_port
from tests.telegram.test_bot_faults import _start
from tests.tools.test_tools import SCHEMA, http_tool_server

ASK = "book it TOOLS: " + json.dumps([[["book", {"room": "A", "hour": 9}]]])


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    yield exporter
    tracing.use_provider(None)
    provider.shutdown()


def _by_name(found: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in found if s.name == name]


@pytest.mark.parametrize("capture", [False, True])
def test_a_message_is_a_trace_with_every_fallback_attempt_and_each_tool_call(
    tmp_path: Path, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch, capture: bool
) -> None:
    if capture:
        monkeypatch.setenv(tracing.CAPTURE_ENV, "true")
    engine = make_engine(f"sqlite:///{tmp_path / 't.db'}")
    schema.upgrade(engine)
    registry = SecretaryRegistry(engine)
    with (
        llm_server() as (primary_url, primary),
        llm_server() as (backup_url, _backup),
        http_tool_server() as (tool_url, seen),
    ):
        registry.add_provider("primary", primary_url)
        registry.add_provider("backup", backup_url)
        ToolRegistry(engine).add(ToolSpec("book", "http", url=tool_url + "/book", schema=SCHEMA))
        registry.create_secretary(
            AssistantCreate(
                name="alice",
                model="primary/big",
                prompt="You are alice.",
                is_default=True,
                params={"fallback_models": "backup/small", "tools": "book", "temperature": 0.2},
            )
        )
        primary.default = "500"
        settings = replace(
            Settings.load(env={"SECRETARIES_HOME": str(tmp_path)}),
            model_max_retries=0,
            model_timeout_seconds=10.0,
        )
        store = SqlContextStore(engine, settings.context_policy)
        orch = Orchestrator(registry, store, settings)

        async def run() -> str:
            reply = await orch.ahandle(5, ASK, idempotency_key="u1")
            await orch.aclose()
            return reply.text

        text = asyncio.run(run())
        orch.close()
    assert "booked" in text and len(seen) == 1
    found = spans.get_finished_spans()
    (message,) = _by_name(found, "secretaries.message")
    attrs = dict(message.attributes or {})
    assert attrs["gen_ai.operation.name"] == "invoke_agent"
    assert attrs["secretaries.secretary"] == "alice" and attrs["gen_ai.agent.name"] == "alice"
    assert attrs["secretaries.version"] == 1
    assert attrs["secretaries.rollout_arm"] == "live"
    # Each model call its own span, each fallback attempt too: the primary failed twice
    # (one per round), the backup answered twice (the tool round, then the text).
    failed = _by_name(found, "chat big")
    answered = _by_name(found, "chat small")
    assert len(failed) == 2 and len(answered) == 2, [s.name for s in found]
    for chat in failed + answered:
        assert chat.parent is not None and chat.parent.span_id == message.context.span_id
        assert chat.context.trace_id == message.context.trace_id
        a = dict(chat.attributes or {})
        assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.temperature"] == 0.2
    assert dict(failed[0].attributes or {})["error.type"] == "ModelUnavailable"
    first, second = sorted(answered, key=lambda s: s.start_time or 0)
    assert dict(first.attributes or {})["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert dict(second.attributes or {})["gen_ai.response.finish_reasons"] == ("stop",)
    assert dict(second.attributes or {})["gen_ai.provider.name"] == "backup"
    (tool,) = _by_name(found, "execute_tool book")
    assert tool.parent is not None and tool.parent.span_id == message.context.span_id
    t = dict(tool.attributes or {})
    assert t["gen_ai.operation.name"] == "execute_tool" and t["gen_ai.tool.call.id"] == "u1:0:0"
    # Contents only when asked for.
    assert ("gen_ai.input.messages" in dict(second.attributes or {})) is capture
    assert ("gen_ai.tool.call.result" in t) is capture
    if capture:
        assert "book it" in str(dict(second.attributes or {})["gen_ai.input.messages"])
    engine.dispose()


class _Receiver(BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver: decodes each export request into the server's list."""

    def do_POST(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        got: list[dict[str, Any]] = self.server.got  # type: ignore[attr-defined]
        for resource in request.resource_spans:
            service = next(
                a.value.string_value
                for a in resource.resource.attributes
                if a.key == "service.name"
            )
            for scope in resource.scope_spans:
                for s in scope.spans:
                    got.append(
                        {
                            "service": service,
                            "name": s.name,
                            "trace": s.trace_id.hex(),
                            "id": s.span_id.hex(),
                            "parent": s.parent_span_id.hex(),
                        }
                    )
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_the_workers_trace_continues_the_apis_through_the_queue(
    tmp_path: Path, redis_url: str
) -> None:
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    receiver.got = []  # type: ignore[attr-defined]
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    db_url = f"sqlite:///{tmp_path / 'q.db'}"
    engine = make_engine(db_url)
    schema.upgrade(engine)
    SecretaryRegistry(engine).create_secretary(
        AssistantCreate(name="alice", model="openai/m", prompt="You are alice.", is_default=True)
    )
    engine.dispose()
    port = free_port()
    with llm_server() as (llm_url, _script):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SECRETARIES_", "OTEL_"))}
        env.update(
            SECRETARIES_HOME=str(tmp_path / "home"),
            SECRETARIES_DATABASE_URL=db_url,
            SECRETARIES_OPENAI_BASE_URL=llm_url,
            SECRETARIES_QUEUE_URL=redis_url,
            SECRETARIES_CONTEXT_URL=redis_url,
            SECRETARIES_REDIS_PREFIX=f"tr{uuid.uuid4().hex[:6]}:",
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{receiver.server_address[1]}",
            OTEL_BSP_SCHEDULE_DELAY="100",
        )
        logs = {n: (tmp_path / f"{n}.log").open("w") for n in ("api", "worker")}
        procs = [
            _start(
                ["serve", "--no-auth", "--port", str(port)],
                dict(env, OTEL_SERVICE_NAME="api"),
                logs["api"],
            ),
            _start(["worker"], dict(env, OTEL_SERVICE_NAME="worker"), logs["worker"]),
        ]
        try:
            deadline = time.monotonic() + 60
            body = json.dumps({"update_id": 1, "telegram_id": 42, "text": "hi"}).encode()
            while True:
                try:
                    request = urllib.request.Request(
                        f"http://127.0.0.1:{port}/api/updates",
                        body,
                        {"Content-Type": "application/json"},
                    )
                    urllib.request.urlopen(request, timeout=5).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "serve did not start"
                    time.sleep(0.2)
            got: list[dict[str, Any]] = receiver.got  # type: ignore[attr-defined]

            def names() -> set[tuple[str, str]]:
                return {(g["service"], g["name"]) for g in list(got)}

            while not {("api", "secretaries.enqueue"), ("worker", "chat m")} <= names():
                assert time.monotonic() < deadline, names()
                time.sleep(0.1)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=30)
            for log in logs.values():
                log.close()
            receiver.shutdown()
    enqueue = next(g for g in got if g["name"] == "secretaries.enqueue")
    message = next(g for g in got if g["name"] == "secretaries.message")
    chat = next(g for g in got if g["name"] == "chat m")
    assert message["service"] == "worker"
    assert message["trace"] == enqueue["trace"] == chat["trace"]
    assert message["parent"] == enqueue["id"]  # the API's span is the worker's parent
    assert chat["parent"] == message["id"]


def test_nothing_is_imported_or_recorded_without_configuration(tmp_path: Path) -> None:
    code = f"""
import asyncio, sys
from secretaries_core.catalog.models import AssistantCreate
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.config import Settings
from secretaries_core.context.sql import SqlContextStore
from secretaries_core.orchestrator import Orchestrator
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine
engine = make_engine("sqlite:///{tmp_path / "n.db"}")
schema.upgrade(engine)
registry = SecretaryRegistry(engine)
registry.create_secretary(AssistantCreate(name="a", model="echo/m", prompt="p", is_default=True))
settings = Settings.load(env={{}})
orch = Orchestrator(registry, SqlContextStore(engine, settings.context_policy), settings)
print(orch.handle(1, "hello").text)
print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SECRETARIES_", "OTEL_"))}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"
