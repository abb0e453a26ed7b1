"""The model client against recorded wire formats of LiteLLM's proxy, vLLM and llama.cpp.

A loopback server replays each body byte for byte (SSE streams and error documents as
those servers send them). Checked: an in-band error inside a 200 stream is an outage
(retried before the first piece), not "HTTP 200"; a stream that ends without `[DONE]` is
never stored as complete; `finish_reason: "length"` is stored and marked truncated; every
server's context-overflow wording is recognised (the turn is retried with less history).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest
from aiohttp import web

from secretaries_core.catalog.models import AssistantCreate
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.config import Settings
from secretaries_core.context import SqlContextStore
from secretaries_core.errors import ModelUnavailable
from secretaries_core.orchestrator import Orchestrator
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine
from tests.servers import app_in_thread

CHUNK = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}


def sse(*events: Any, done: bool = True) -> bytes:
    out = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    return out + (b"data: [DONE]\n\n" if done else b"")


def piece(text: str, finish: str | None = None) -> dict[str, Any]:
    delta = {"content": text} if text else {}
    return {**CHUNK, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


OK_STREAM = sse(piece("all "), piece("good", "stop"))
# LiteLLM's proxy: an upstream failure after the stream began, as one in-band event.
LITELLM_MIDSTREAM = sse(
    {
        "error": {
            "message": "litellm.APIConnectionError: upstream reset",
            "type": "None",
            "param": "None",
            "code": "500",
        }
    },
    done=False,
)
CUT_STREAM = sse(piece("half of "), done=False)  # the connection dropped: no [DONE]
LENGTH_STREAM = sse(piece("cut at the li"), piece("", "length"))
OVERFLOWS = {
    "litellm": {
        "error": {
            "message": "litellm.ContextWindowExceededError: litellm."
            "BadRequestError: ContextWindowExceededError: context window "
            "exceeded",
            "type": None,
            "param": None,
            "code": "400",
        }
    },
    "vllm": {
        "object": "error",
        "message": "This model's maximum context length is 4096 "
        "tokens. However, you requested 5000 tokens.",
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    },
    "llama.cpp": {
        "error": {
            "code": 400,
            "message": "the request exceeds the available context size, try increasing it",
            "type": "exceed_context_size_error",
        }
    },
}


@contextmanager
def replay(answers: list[tuple[int, str, bytes]]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Answer each request with the next (status, content type, body); the last repeats."""
    seen: list[dict[str, Any]] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        seen.append(await request.json())
        status, kind, body = answers[min(len(seen) - 1, len(answers) - 1)]
        response = web.StreamResponse(status=status, headers={"Content-Type": kind})
        await response.prepare(request)
        await response.write(body)
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    with app_in_thread(app, name="replay") as port:
        yield f"http://127.0.0.1:{port}/v1", seen


@pytest.fixture
def make(tmp_path: Any) -> Iterator[Any]:
    engine = make_engine(f"sqlite:///{tmp_path / 'wire.db'}")
    schema.upgrade(engine)
    registry = SecretaryRegistry(engine)
    registry.create_secretary(
        AssistantCreate(name="alice", model="openai/m", prompt="A.", is_default=True)
    )
    store = SqlContextStore(engine, Settings.load(env={}).context_policy)
    made: list[Orchestrator] = []

    def build(url: str, retries: int = 1) -> Orchestrator:
        settings = replace(
            Settings.load(env={}),
            openai_base_url=url,
            model_max_retries=retries,
            model_timeout_seconds=10.0,
        )
        orch = Orchestrator(registry, store, settings)
        made.append(orch)
        return orch

    yield build, registry, store
    for orch in made:
        orch.close()
    engine.dispose()


async def _stream(orch: Orchestrator, text: str) -> str:
    out = "".join([p async for p in orch.astream(1, text)])
    await orch.aclose()
    return out


def test_an_in_band_error_before_the_first_piece_is_retried(make: Any) -> None:
    build, _r, _s = make
    sse_type = "text/event-stream"
    with replay([(200, sse_type, LITELLM_MIDSTREAM), (200, sse_type, OK_STREAM)]) as (url, seen):
        assert asyncio.run(_stream(build(url), "hello")) == "all good"
    assert len(seen) == 2


def test_an_in_band_error_is_an_outage_not_http_200(make: Any) -> None:
    build, _r, _s = make
    midstream = [(200, "text/event-stream", LITELLM_MIDSTREAM)]
    with replay(midstream) as (url, _seen), pytest.raises(ModelUnavailable) as caught:
        asyncio.run(_stream(build(url, retries=0), "hello"))
    assert "HTTP 200" not in str(caught.value) and "500" in str(caught.value)


def test_a_stream_without_done_is_never_stored_as_complete(make: Any) -> None:
    build, registry, store = make
    cut = [(200, "text/event-stream", CUT_STREAM)]
    with (
        replay(cut) as (url, _seen),
        pytest.raises(ModelUnavailable, match="ended before it was complete"),
    ):
        asyncio.run(_stream(build(url, retries=0), "tell me"))
    assert store.read(1, registry.get_secretary("alice").id) == []


def test_finish_reason_length_is_stored_marked_truncated(make: Any) -> None:
    build, registry, store = make
    with replay([(200, "text/event-stream", LENGTH_STREAM)]) as (url, _seen):
        assert asyncio.run(_stream(build(url), "long story")) == "cut at the li"
    stored = store.read(1, registry.get_secretary("alice").id)
    assert stored[-1].content == "cut at the li"
    assert (stored[-1].metadata or {}).get("truncated") is True


@pytest.mark.parametrize("server", sorted(OVERFLOWS))
def test_every_servers_overflow_wording_retries_with_less_history(make: Any, server: str) -> None:
    build, _registry, _store = make
    body = json.dumps(OVERFLOWS[server]).encode()
    completion = {
        **CHUNK,
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "noted"},
                "finish_reason": "stop",
            }
        ],
    }
    answers = [
        (200, "application/json", json.dumps(completion).encode()),
        (400, "application/json", body),
        (200, "text/event-stream", OK_STREAM),
    ]
    with replay(answers) as (url, seen):
        orch = build(url)
        orch.handle(1, "first")  # some history to drop
        assert asyncio.run(_stream(orch, "second")) == "all good"
    # the refused request, then the same turn asked again with less history
    assert len(seen) >= 3 and len(seen[-1]["messages"]) < len(seen[-2]["messages"])


def _call_delta(index: int, **fields: Any) -> dict[str, Any]:
    return {**CHUNK, "choices": [{"index": 0, "delta": {"content": "", "tool_calls": [
        {"index": index, **fields}]}, "finish_reason": None}]}  # fmt: skip


# Streamed tool calls as each server sends them (two calls, arguments in pieces).
# LiteLLM: the first delta of a call has id, type and name; continuation chunks carry only
# the index and an arguments piece, with `content: ""`.
LITELLM_CALLS = sse(
    {**CHUNK, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
    _call_delta(0, id="call_a", type="function", function={"name": "book", "arguments": ""}),
    _call_delta(0, function={"arguments": '{"room": '}),
    _call_delta(0, function={"arguments": '"A"}'}),
    _call_delta(1, id="call_b", type="function", function={"name": "look", "arguments": "{}"}),
    {**CHUNK, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
)
# vLLM: the id and name come with the first arguments piece; later pieces repeat no id.
VLLM_CALLS = sse(
    _call_delta(0, id="chatcmpl-tool-1", type="function",
                function={"name": "book", "arguments": '{"room"'}),
    _call_delta(0, function={"arguments": ': "A"}'}),
    _call_delta(1, id="chatcmpl-tool-2", type="function",
                function={"name": "look", "arguments": "{}"}),
    {**CHUNK, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
)  # fmt: skip
# llama.cpp's server: no index on the delta at all in older builds; one call per chunk list.
LLAMA_CALLS = sse(
    {**CHUNK, "choices": [{"index": 0, "delta": {"tool_calls": [
        {"id": "x1", "type": "function", "function": {"name": "book",
         "arguments": '{"room": "A"}'}},
        {"id": "x2", "type": "function", "function": {"name": "look", "arguments": "{}"}},
    ]}, "finish_reason": None}]},
    {**CHUNK, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
)  # fmt: skip


@pytest.mark.parametrize(
    "wire", [LITELLM_CALLS, VLLM_CALLS, LLAMA_CALLS], ids=["litellm", "vllm", "llama.cpp"]
)
def test_streamed_tool_calls_are_assembled_from_each_servers_deltas(wire: bytes) -> None:
    from secretaries_core.llm.base import CallUsage, ChatRequest
    from secretaries_core.llm.openai_client import OpenAIAdapter, OpenAIClients

    async def run() -> tuple[list[str], CallUsage]:
        clients = OpenAIClients(base_url=url, api_key="k", timeout=5, max_retries=0)
        request = ChatRequest("s", "S.", [], ["book A"], {}, tools=[{"type": "function"}])
        usage = CallUsage()
        pieces = [
            p async for p in OpenAIAdapter("m", clients).pieces(request, stream=True, usage=usage)
        ]
        await clients.aclose()
        return pieces, usage

    with replay([(200, "text/event-stream", wire)]) as (url, seen):
        pieces, usage = asyncio.run(run())
    # A reply that is only tool calls is not "a reply with no text".
    assert pieces == []
    assert [(c.name, json.loads(c.arguments)) for c in usage.tool_calls] == [
        ("book", {"room": "A"}),
        ("look", {}),
    ]
    assert len({c.id for c in usage.tool_calls}) == 2
    assert seen[0]["tools"] == [{"type": "function"}]
