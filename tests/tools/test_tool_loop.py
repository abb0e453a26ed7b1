"""The tool loop through the library, against real servers: the model double asks for calls
(it reads its script from the user's message: `TOOLS:` rounds, see tests/llm_server.py),
an HTTP function and an MCP server (stdio and Streamable HTTP) answer them.

Each test checks what the servers received (exact arguments, the call ids), what the model
was sent (the `tool` messages), the reply (it quotes the results) and the stored context.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from secretaries_core.catalog.models import AssistantCreate, AssistantUpdate
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.config import Settings
from secretaries_core.context.sql import SqlContextStore
from secretaries_core.orchestrator import Orchestrator
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine
from secretaries_core.tools.ledger import ledger_id
from secretaries_core.tools.registry import ToolRegistry
from secretaries_core.tools.spec import ToolSpec
from tests.llm_server import llm_server
from tests.tools.test_tools import SCHEMA, _calls, _stdio, http_tool_server, mcp_http_server


def _ask(rounds: list[list[list[Any]]], note: str = "") -> str:
    return f"{note} TOOLS: {json.dumps(rounds)}"


class Rig:
    """A catalog with one secretary `alice`, its context store, and orchestrators."""

    def __init__(self, tmp_path: Path) -> None:
        self.engine = make_engine(f"sqlite:///{tmp_path / 'loop.db'}")
        schema.upgrade(engine=self.engine)
        self.registry = SecretaryRegistry(self.engine)
        self.tools = ToolRegistry(self.engine)
        self.store = SqlContextStore(self.engine, Settings.load(env={}).context_policy)
        self.made: list[Orchestrator] = []

    def secretary(self, tools: str, **params: Any) -> None:
        self.registry.create_secretary(
            AssistantCreate(
                name="alice",
                model="m",
                prompt="A.",
                is_default=True,
                params={"tools": tools, **params},
            )
        )

    def orchestrator(self, url: str, **changes: Any) -> Orchestrator:
        settings = replace(
            Settings.load(env={}), openai_base_url=url, model_timeout_seconds=20.0, **changes
        )
        orch = Orchestrator(self.registry, self.store, settings)
        self.made.append(orch)
        return orch

    def close(self) -> None:
        for orch in self.made:
            orch.close()
        self.store.close()
        self.engine.dispose()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path)
    yield made
    made.close()


def _tool_messages(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in request["messages"] if m["role"] == "tool"]


@pytest.mark.parametrize("stream", [False, True])
def test_one_round_of_two_calls_then_three_rounds_http_and_mcp_stdio(
    rig: Rig, tmp_path: Path, stream: bool
) -> None:
    log = tmp_path / "mcp.log"
    with http_tool_server() as (tool_url, seen), llm_server() as (llm_url, script):
        rig.tools.add(ToolSpec("book", "http", url=tool_url + "/book", schema=SCHEMA))
        rig.tools.add(ToolSpec("cal", "mcp", command=_stdio(log)))
        rig.secretary("book,cal")
        orch = rig.orchestrator(llm_url)
        two = _ask([[["book", {"room": "A", "hour": 9}], ["cal__echo", {"text": "hi ✓"}]]])
        three = _ask(
            [
                [["book", {"room": "B", "hour": 10}]],
                [["cal__echo", {"text": "second"}]],
                [["book", {"room": "C", "hour": 11}]],
            ]
        )

        async def run() -> list[str]:
            out = []
            for text in (two, three):
                if stream:
                    pieces = orch.astream(7, text)
                    out.append("".join([p async for p in pieces]))
                else:
                    out.append((await orch.ahandle(7, text, idempotency_key=f"u{len(out)}")).text)
            await orch.aclose()
            return out

        replies = asyncio.run(run())

    # The tools got exactly the model's arguments, in order of rounds.
    assert [json.loads(s["body"]) for s in seen] == [
        {"room": "A", "hour": 9},
        {"room": "B", "hour": 10},
        {"room": "C", "hour": 11},
    ]
    assert [(c["tool"], c["args"]) for c in _calls(log)] == [
        ("echo", {"text": "hi ✓"}),
        ("echo", {"text": "second"}),
    ]
    if not stream:  # keyed turns: the call ids are <update>:<round>:<index>
        assert [s["key"] for s in seen] == ["u0:0:0", "u1:0:0", "u1:2:0"]
        assert [c["key"] for c in _calls(log)] == ["u0:0:1", "u1:1:0"]
    # The model was offered the functions and read the results back as `tool` messages.
    offered = {t["function"]["name"] for t in script.requests[0]["tools"]}
    assert {"book", "cal__echo", "cal__slow"} <= offered
    assert len(script.requests) == 2 + 4
    booked = '{"booked": {"room": "A", "hour": 9}}'
    assert [m["content"] for m in _tool_messages(script.requests[1])] == [
        booked,
        "echo: hi ✓ (key " + ("u0:0:1" if not stream else _calls(log)[0]["key"]) + ")",
    ]
    # The reply uses the results.
    assert replies[0].startswith("results: " + booked)
    assert "echo: second" in replies[1] and '"room": "C"' in replies[1]
    # The context holds the turn in order: user, calls, results, answer — in OpenAI shapes.
    stored = rig.store.read(7, rig.registry.get_secretary("alice").id)
    roles = [m.role for m in stored]
    assert roles == [
        "user", "assistant", "tool", "tool", "assistant",
        "user", "assistant", "tool", "assistant", "tool", "assistant", "tool", "assistant",
    ]  # fmt: skip
    first_calls = (stored[1].metadata or {})["tool_calls"]
    assert [c["function"]["name"] for c in first_calls] == ["book", "cal__echo"]
    assert (stored[2].metadata or {})["tool_call_id"] == first_calls[0]["id"]
    # The next message sends that history back whole, in the shapes the API takes.
    assert script.requests[-1]["messages"][2]["tool_calls"][0]["function"]["name"] == "book"


def test_mcp_over_streamable_http_in_the_loop(rig: Rig, tmp_path: Path) -> None:
    log = tmp_path / "mcp-http.log"
    with mcp_http_server(log) as mcp_url, llm_server() as (llm_url, script):
        rig.tools.add(ToolSpec("cal", "mcp", url=mcp_url, allow=("echo",)))
        rig.secretary("cal")
        orch = rig.orchestrator(llm_url)

        async def run() -> str:
            reply = await orch.ahandle(
                3, _ask([[["cal__echo", {"text": "over http"}]]]), idempotency_key="h1"
            )
            await orch.aclose()
            return reply.text

        text = asyncio.run(run())
    assert [t["function"]["name"] for t in script.requests[0]["tools"]] == ["cal__echo"]
    assert text == "results: echo: over http (key h1:0:0)"
    assert [c["key"] for c in _calls(log)] == ["h1:0:0"]


def test_after_max_tool_rounds_the_model_is_asked_with_tool_choice_none(rig: Rig) -> None:
    with http_tool_server() as (tool_url, seen), llm_server() as (llm_url, script):
        rig.tools.add(ToolSpec("book", "http", url=tool_url + "/book", schema=SCHEMA))
        rig.secretary("book", max_tool_rounds=2)
        orch = rig.orchestrator(llm_url)
        looping = _ask([[["book", {"room": "L", "hour": i}]] for i in range(10)])

        async def run() -> str:
            reply = await orch.ahandle(5, looping)
            await orch.aclose()
            return reply.text

        text = asyncio.run(run())
    assert len(seen) == 2  # two rounds, then no more calls
    assert script.requests[-1]["tool_choice"] == "none"
    assert text.startswith("results: ")


def test_the_tools_own_timeout_fires_and_a_failing_tool_never_fails_the_turn(
    rig: Rig,
) -> None:
    with http_tool_server() as (tool_url, _seen), llm_server() as (llm_url, _script):
        rig.tools.add(
            ToolSpec(
                "short",
                "http",
                url=tool_url + "/slow",
                schema=SCHEMA,
                timeout=1.0,
                timeout_set=True,
            )
        )
        # No --timeout of its own: the secretary's tool_timeout (4.5 s) applies.
        rig.tools.add(ToolSpec("long", "http", url=tool_url + "/slow", schema=SCHEMA))
        rig.tools.add(ToolSpec("broken", "http", url=tool_url + "/fail", schema=SCHEMA))
        rig.secretary("short,long,broken", tool_timeout=4.5)
        orch = rig.orchestrator(llm_url)

        async def one(rounds: list[list[list[Any]]]) -> tuple[str, float]:
            started = time.monotonic()
            reply = await orch.ahandle(9, _ask(rounds))
            return reply.text, time.monotonic() - started

        async def run() -> list[tuple[str, float]]:
            out = [
                await one([[["short", {"room": "x", "hour": 20}]]]),
                await one([[["long", {"room": "y", "hour": 4}]]]),
                await one([[["broken", {"room": "z", "hour": 1}]]]),
            ]
            await orch.aclose()
            return out

        (cut, cut_s), (done, done_s), (failed, _f) = asyncio.run(run())
    assert cut == "results: error: timed out after 1s"
    assert 0.9 < cut_s < 3.0, cut_s  # the 1 s timeout, not the 20 s tool
    assert done.startswith('results: {"booked"') and 4.0 < done_s < 8.0, (done, done_s)
    assert failed == "results: error: HTTP 500: database locked"


def test_version_tools_ride_on_versions_and_removal_is_refused(rig: Rig) -> None:
    with http_tool_server() as (tool_url, _seen):
        rig.tools.add(ToolSpec("book", "http", url=tool_url + "/book", schema=SCHEMA))
        rig.secretary("book")
        rig.registry.update_secretary("alice", AssistantUpdate(params={"tools": ""}))
    from secretaries_core.errors import Conflict

    with pytest.raises(Conflict, match="alice v1"):
        rig.tools.remove("book")


def test_the_ledger_is_named_and_erased_with_the_user(rig: Rig) -> None:
    with http_tool_server() as (tool_url, _seen), llm_server() as (llm_url, _script):
        rig.tools.add(ToolSpec("book", "http", url=tool_url + "/book", schema=SCHEMA))
        rig.secretary("book")
        orch = rig.orchestrator(llm_url)

        async def run() -> None:
            await orch.ahandle(
                11, _ask([[["book", {"room": "E", "hour": 1}]]]), idempotency_key="e1"
            )
            await orch.aclose()

        asyncio.run(run())
    sid = rig.registry.get_secretary("alice").id
    entries = rig.store.read(11, ledger_id(sid))
    assert [(m.metadata or {})["update_id"] for m in entries] == ["round:e1:0", "result:e1:0:0"]
    # The round's entry says its call was about to be sent (one entry, before the call).
    assert json.loads(entries[0].content)["started"] == [0]
    from secretaries_core.catalog import admin

    admin.erase_user(rig.registry, rig.store, 11)
    assert rig.store.read(11, ledger_id(sid)) == []
    assert list(rig.store.iter_contexts(user_id=11)) == []


def test_a_message_answered_again_reuses_stored_results_and_never_resends_a_call(
    rig: Rig,
) -> None:
    with http_tool_server() as (tool_url, seen), llm_server() as (llm_url, script):
        rig.tools.add(ToolSpec("book", "http", url=tool_url + "/book", schema=SCHEMA))
        rig.secretary("book")
        orch = rig.orchestrator(llm_url, model_max_retries=0)
        text = _ask([[["book", {"room": "R", "hour": 1}], ["book", {"room": "S", "hour": 2}]]])
        # The calls run, then the model is down for the next round: the turn fails.
        script.steps = ["ok", "500"]

        async def run() -> str:
            from secretaries_core.errors import ModelUnavailable

            with pytest.raises(ModelUnavailable):
                await orch.ahandle(21, text, idempotency_key="again")
            asked = len(script.requests)
            # Delivered again (the worker retries it): the stored round and results are
            # used, the model is asked only for the text.
            reply = await orch.ahandle(21, text, idempotency_key="again")
            assert len(script.requests) == asked + 1
            await orch.aclose()
            return reply.text

        answer = asyncio.run(run())
    assert [s["key"] for s in seen] == ["again:0:0", "again:0:1"]  # each sent once
    assert answer == 'results: {"booked": {"room": "R", "hour": 1}} / ' + (
        '{"booked": {"room": "S", "hour": 2}}'
    )


def test_a_call_that_started_and_left_no_result_is_not_sent_again(rig: Rig) -> None:
    from secretaries_core.llm.base import ToolCall
    from secretaries_core.tools.ledger import ToolLedger

    with http_tool_server() as (tool_url, seen), llm_server() as (llm_url, _script):
        rig.tools.add(ToolSpec("book", "http", url=tool_url + "/book", schema=SCHEMA))
        rig.tools.add(
            ToolSpec("look", "http", url=tool_url + "/look", schema=SCHEMA, read_only=True)
        )
        rig.secretary("book,look")
        orch = rig.orchestrator(llm_url)
        sid = rig.registry.get_secretary("alice").id
        ledger = ToolLedger(rig.store)
        calls = [
            ToolCall("c1", "book", '{"room": "K", "hour": 1}'),
            ToolCall("c2", "look", '{"room": "K", "hour": 1}'),
        ]

        async def run() -> str:
            # A worker recorded the round and started both calls, then died.
            at = datetime.now(UTC)
            await ledger.write_round(31, sid, "k", 0, calls, time.time(), at)
            await ledger.write_start(31, sid, "k:0:0", time.time(), at)
            await ledger.write_start(31, sid, "k:0:1", time.time(), at)
            reply = await orch.ahandle(31, _ask([[["x", {}]]]), idempotency_key="k")
            await orch.aclose()
            return reply.text

        answer = asyncio.run(run())
    # The side-effecting call is not sent again; the read-only one is.
    assert [s["path"] for s in seen] == ["/look"]
    assert answer.startswith("results: error: this call was interrupted")


def test_hostile_tool_output_never_fails_a_turn_nor_leaks(rig: Rig, tmp_path: Path) -> None:
    log = tmp_path / "hostile.log"
    key = "sk-proj-LEAKEDLEAKEDLEAKED123"
    with http_tool_server() as (tool_url, _seen), llm_server() as (llm_url, script):
        rig.tools.add(ToolSpec("cal", "mcp", command=_stdio(log)))
        rig.tools.add(ToolSpec("raw", "http", url=tool_url + "/bytes", schema=SCHEMA))
        rig.secretary("cal,raw")
        orch = rig.orchestrator(llm_url, openai_api_key=key, tool_result_chars=2000)
        hostile = [
            [["cal__big", {"chars": 10_000_000}]],
            [["raw", {"room": "q", "hour": 1}]],
            [["cal__fail", {}]],
            [["cal__crash", {}]],
        ]

        async def run() -> list[str]:
            out = [(await orch.ahandle(41, _ask(hostile))).text]
            out.append((await orch.ahandle(41, _ask([[["cal__echo", {"text": "after"}]]]))).text)
            await orch.aclose()
            return out

        first, after = asyncio.run(run())
    results = first.removeprefix("results: ").split(" / ")
    assert results[0].startswith("x" * 100) and "[result cut at 2000 of" in results[0]
    assert "booked" in results[1] and "\ufffd" in results[1]
    assert results[2].startswith("error: MCP error: ")
    assert results[2].endswith("the calendar is locked")
    assert results[3].startswith("error: MCP server unreachable")
    assert after.startswith("results: echo: after")  # a new session after the crash
    # The key never reached the model, the reply or the stored context.
    everything = json.dumps(script.requests) + first
    everything += json.dumps(
        [m.content for m in rig.store.read(41, rig.registry.get_secretary("alice").id)]
    )
    assert key not in everything and "LEAKED" not in everything


def test_the_daily_tool_call_quota_and_the_metrics(rig: Rig) -> None:
    from prometheus_client import generate_latest

    with http_tool_server() as (tool_url, seen), llm_server() as (llm_url, _script):
        rig.tools.add(ToolSpec("book", "http", url=tool_url + "/book", schema=SCHEMA))
        rig.secretary("book", tool_calls_per_day=1)
        orch = rig.orchestrator(llm_url)
        ask = _ask([[["book", {"room": "Q", "hour": 1}]]])

        async def run() -> list[str]:
            out = [(await orch.ahandle(51, ask)).text, (await orch.ahandle(51, ask)).text]
            out.append((await orch.ahandle(52, ask)).text)  # another user has their own
            await orch.aclose()
            return out

        first, second, other = asyncio.run(run())
        exposed = generate_latest(orch.metrics.registry).decode()
    assert len(seen) == 2
    assert first.startswith('results: {"booked"') and other.startswith('results: {"booked"')
    assert second == (
        "results: error: this tool is unavailable: the user's daily tool-call quota is used up"
    )
    assert (
        'secretaries_tool_calls_total{outcome="ok",secretary="alice",tool="book",version="1"} 2.0'
        in exposed
    )
    assert 'outcome="refused"' in exposed and "secretaries_tool_seconds_bucket" in exposed
    orch.flush_usage()
    from secretaries_core.usage import UsageBook

    assert UsageBook(rig.engine).report(telegram_id=51).total.tool_calls == 1  # no names needed


def test_a_canary_that_breaks_a_tool_is_rolled_back(rig: Rig) -> None:
    with http_tool_server() as (tool_url, _seen), llm_server() as (llm_url, _script):
        rig.tools.add(ToolSpec("book", "http", url=tool_url + "/book", schema=SCHEMA))
        rig.tools.add(ToolSpec("broken", "http", url=tool_url + "/fail", schema=SCHEMA))
        rig.secretary("book")
        # The candidate changes only the tools: its calls fail.
        rig.registry.update_secretary(
            "alice", AssistantUpdate(params={"tools": "broken"}), draft=True
        )
        rig.registry.rollout_start("alice", percent=100, max_error_rate=0.5, min_messages=3)
        orch = rig.orchestrator(llm_url, resolution_ttl_seconds=0.0)

        async def run() -> list[str]:
            out = []
            for user in range(61, 67):
                text = _ask([[["broken", {"room": "C", "hour": 1}]]])
                out.append((await orch.ahandle(user, text)).text)
                orch.flush_usage()
            await orch.aclose()
            return out

        replies = asyncio.run(run())
    # The canary's messages were answered (a failing tool never fails the turn) ...
    assert replies[0] == "results: error: HTTP 500: database locked"
    # ... and counted as errors of version 2, which rolled it back.
    status = rig.registry.rollout_status("alice")
    assert status["state"] == "rolled_back", status
    assert status["candidate"]["errors"] >= 3, status


def test_an_interrupting_message_reuses_the_call_the_interrupted_one_made(rig: Rig) -> None:
    from secretaries_core.errors import Interrupted

    with http_tool_server() as (tool_url, seen), llm_server() as (llm_url, _script):
        rig.tools.add(ToolSpec("book", "http", url=tool_url + "/slow", schema=SCHEMA))
        rig.secretary("book", double_texting="interrupt")
        orch = rig.orchestrator(llm_url)
        same = _ask([[["book", {"hour": 1.5, "room": "I"}]]])

        async def run() -> str:
            first = asyncio.ensure_future(orch.ahandle(71, same, idempotency_key="i1"))
            while not seen:  # the booking is on its way
                await asyncio.sleep(0.01)
            second = await orch.ahandle(71, same.replace('"hour"', ' "hour"'),
                                        idempotency_key="i2")  # fmt: skip
            with pytest.raises(Interrupted):
                await first
            await orch.aclose()
            return second.text

        text = asyncio.run(run())
    # The booking was sent once; the newer message answered with its result.
    assert len(seen) == 1 and seen[0]["key"] == "i1:0:0"
    assert text == 'results: {"booked": {"hour": 1.5, "room": "I"}}'


def _text(fields: dict[Any, Any]) -> str:
    value = fields.get(b"text", fields.get("text", b""))
    return value.decode() if isinstance(value, bytes) else str(value)


def test_workers_live_preview_names_the_running_tool(redis_url: str) -> None:
    from secretaries_core.queue import Queue
    from secretaries_core.queue.client import Update
    from secretaries_core.queue.live import LivePieces

    queue = Queue(redis_url, prefix=f"live{time.monotonic_ns()}:")

    async def run() -> list[str]:
        live = LivePieces(queue, Update(5, 81, "book"), interval=0.01)
        live.feed("Let me check. ")
        live.tool("cal__list_events", "started")
        await asyncio.sleep(0.1)
        live.tool("cal__list_events", "done")
        live.feed("Done.")
        await asyncio.sleep(0.1)
        await live.end()
        entries = await queue.aclient().xrange(queue.keys.live)
        await queue.aclose()
        return [_text(fields) for _id, fields in entries]

    texts = asyncio.run(run())
    assert "Let me check. \n\n🔧 cal: list_events…" in texts, texts
    assert "Let me check. Done." in texts, texts
