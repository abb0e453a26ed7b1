"""CPU and latency of a tool round: `ahandle` with an MCP tool vs the same calls made bare.

The model double and the MCP server (the official SDK's FastMCP, over stdio) run in
processes of their own, so only this process's CPU counts. One message = the model asks
for one MCP call (`echo`), the call runs, the model is asked again with the result and
answers. Through `Orchestrator.ahandle` on the embedded SQLite store and on Redis (the
workers' store in production), with an update id
(`keyed`: the exactly-once ledger records the round, the call's start and its result) and
without. Baseline in the same run: the same two model request bodies POSTed with a bare
aiohttp session (the user's conversation kept as our stores keep it, so the bodies are
as long), plus the same `call_tool` on a bare `mcp` SDK `ClientSession`. Each case has
users of its own; the cases' rounds are interleaved, so the machine's slower spells meet
all of them alike.

Each user's messages alternate: one that asks for a call, one answered at once, so the
CPU a tool round costs is the first less the second, on the same conversations — ours
against the bare MCP call plus the one POST a round adds (target ≤ 1.5x). Also reported:
the whole messages, with a round (against the call and both POSTs) and without (against
one POST; the message path itself, see "The whole message" in docs/performance.md); and
the wall time of a message with a round, p50 and p99.

The cases take turns message by message (each message number sent by every case, the
first case rotating), after a spell that only warms up; the messages are counted in
`--spells` spells. Each figure is the median over the spells of that spell's mean, and
a round's ratio is also given spell by spell (ours against the bare round of the same
spell). On a shared machine whose speed drifts by the second, a difference of two means
taken at different moments is noise; paired spells are what stays put from run to run.

Run: python -m bench.tool_call [--calls 200] [--spells 9] [--stores SQLite,Redis]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import aiohttp

from bench.common import Row, print_table, seconds
from secretaries_core.catalog.models import AssistantCreate
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.config import Settings
from secretaries_core.context import ContextStore, SqlContextStore, open_context_store
from secretaries_core.conversation.resolution import snapshot
from secretaries_core.orchestrator import Orchestrator
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine
from secretaries_core.tools.registry import ToolRegistry
from secretaries_core.tools.spec import ToolSpec
from tests.llm_server import llm_server_process
from tests.servers import redis_server

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "You are alice, a helpful secretary who answers briefly."
SERVER = f"{sys.executable} -m tests.tools.mcp_server stdio"


def _text(i: int) -> str:
    """Even messages ask for one call (one tool round); odd ones are answered at once."""
    if i % 2:
        return f"message {i}: and what else is on today?"
    return f"message {i} TOOLS: " + json.dumps([[["cal__echo", {"text": f"note {i}"}]]])


USERS = 20  # each case talks to users of its own: every case sees conversations as long


class _Bare:
    """The baseline client: a bare aiohttp session POSTing the model bodies and a bare
    `mcp` SDK session making the call. It keeps each user's conversation as our stores
    keep it (the turn's text, the assistant's `tool_calls`, the `tool` result, the reply;
    the newest `max_messages`, cut at whole rounds), so its bodies are the bodies ours
    sends: what the model must be sent either way, not what ours does on top."""

    def __init__(self, base: str, tools: list[dict[str, Any]], max_messages: int) -> None:
        self.base, self.tools, self.max_messages = base, tools, max_messages
        self.history: dict[int, list[dict[str, Any]]] = {}

    async def run(self, mcp: Any, http: aiohttp.ClientSession, user: int, i: int) -> None:
        """One message of `user`: ask, call the tool, ask again with its result."""
        kept = self.history.setdefault(user, [])
        said = {"role": "user", "content": _text(i)}
        ask = [{"role": "system", "content": PROMPT}, *kept, said]
        body = {"model": "m", "tools": self.tools, "messages": ask}
        async with http.post(f"{self.base}/chat/completions", json=body) as response:
            reply = (await response.json())["choices"][0]["message"]
        if not reply.get("tool_calls"):
            kept += [said, {"role": "assistant", "content": reply["content"]}]
            self._trim(kept)
            return
        calls_doc = reply["tool_calls"]
        call = calls_doc[0]
        result = await mcp.call_tool(
            "echo", json.loads(call["function"]["arguments"]),
            meta={"idempotency_key": f"bare:{i}"},
        )  # fmt: skip
        text = result.content[0].text
        step = [
            {"role": "assistant", "content": None, "tool_calls": calls_doc},
            {"role": "tool", "tool_call_id": call["id"], "content": text},
        ]
        body = {"model": "m", "tools": self.tools, "messages": [*ask, *step]}
        async with http.post(f"{self.base}/chat/completions", json=body) as response:
            answer = (await response.json())["choices"][0]["message"]["content"]
        kept += [said, *step, {"role": "assistant", "content": answer}]
        self._trim(kept)

    def _trim(self, kept: list[dict[str, Any]]) -> None:
        del kept[: max(0, len(kept) - self.max_messages)]
        while kept and kept[0]["role"] != "user":  # a round cut by the cap is dropped
            del kept[0]


Spells = dict[str, list[tuple[float, float]]]


async def _measure(
    base: str, calls: int, spells: int, stores: tuple[str, ...], redis_url: str, tmp: Path
) -> tuple[Spells, dict[str, list[float]]]:
    """Per case and spell: the mean CPU of a message with a tool round and of a plain one
    (one user's messages alternate, so both meet the same conversations); and the wall
    time of every message with a tool round."""
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    orchestrators = {kind: _orchestrator(base, tmp / kind, kind, redis_url) for kind in stores}
    tools = await _offered(next(iter(orchestrators.values())))
    settings = Settings.load(env={})
    bare = _Bare(base, tools, settings.context_max_messages)
    words = SERVER.split()
    params = StdioServerParameters(command=words[0], args=words[1:], cwd=str(ROOT))
    cpu: Spells = {}
    walls: dict[str, list[float]] = {}
    try:
        with open("/dev/null", "w") as errlog:
            async with (
                stdio_client(params, errlog) as (read, write),
                ClientSession(read, write) as mcp,
                aiohttp.ClientSession() as http,
            ):
                await mcp.initialize()
                # A client offering the server's tools to a model lists them first (so
                # does ours); the SDK then checks each result against the output schema.
                await mcp.list_tools()
                cases: dict[str, Any] = {"bare": lambda user, i: bare.run(mcp, http, user, i)}
                for kind, orch in orchestrators.items():
                    for keyed in (False, True):
                        name = f"{kind} ahandle" + (" keyed (ledger)" if keyed else "")
                        cases[name] = _ours_case(orch, keyed, name)
                per_spell = max(2, calls // spells // 2 * 2)
                order = list(enumerate(cases.items()))
                for r in range(-1, spells):  # spell -1 warms sessions, pools and caches
                    spent = {name: [0.0, 0.0] for name in cases}  # (tool round, plain)
                    for i in range(r * per_spell, (r + 1) * per_spell):
                        # Message by message, each case in turn (starting with another
                        # each time): what the machine does meanwhile meets all alike.
                        for n, (name, one) in order[i % len(order) :] + order[: i % len(order)]:
                            began, started = time.perf_counter(), time.process_time()
                            await one(n * USERS + 1 + (i // 2) % USERS, i)
                            spent[name][i % 2] += time.process_time() - started
                            if i % 2 == 0 and r >= 0:
                                walls.setdefault(name, []).append(time.perf_counter() - began)
                    for name, (tool, plain) in spent.items():
                        if r >= 0:
                            cpu.setdefault(name, []).append(
                                (2 * tool / per_spell, 2 * plain / per_spell)
                            )
    finally:
        for orch in orchestrators.values():
            await orch.aclose()
        for orch in orchestrators.values():
            orch.close()
            orch.store.close()
            orch.registry.engine.dispose()
    return cpu, walls


def _ours_case(orch: Orchestrator, keyed: bool, name: str) -> Any:
    def one(user: int, i: int) -> Any:
        key = f"{name}:{i}" if keyed else None
        return orch.ahandle(user, _text(i), idempotency_key=key)

    return one


def _orchestrator(base: str, root: Path, kind: str, redis_url: str) -> Orchestrator:
    root.mkdir()
    engine = make_engine(f"sqlite:///{root / 'tools.db'}")
    schema.upgrade(engine)
    ToolRegistry(engine).add(ToolSpec("cal", "mcp", command=SERVER, allow=("echo",)))
    registry = SecretaryRegistry(engine)
    registry.create_secretary(
        AssistantCreate(
            name="alice", model="openai/m", prompt=PROMPT, is_default=True,
            params={"tools": "cal"},
        )
    )  # fmt: skip
    settings = replace(Settings.load(env={}), openai_base_url=base, model_max_retries=0)
    store: ContextStore = (
        SqlContextStore(engine, settings.context_policy)
        if kind == "SQLite"
        else open_context_store(
            redis_url, policy=settings.context_policy, prefix=f"tools{time.monotonic_ns()}:"
        )
    )
    return Orchestrator(registry, store, settings)


async def _offered(orch: Orchestrator) -> list[dict[str, Any]]:
    offered = await orch.toolbox.offered(snapshot(orch.registry.get_secretary("alice")))
    return [dict(o.definition) for o in offered.values()]


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def run(
    calls: int = 200, stores: tuple[str, ...] = ("SQLite", "Redis"), spells: int = 9
) -> tuple[list[Row], dict[str, list[float]], dict[str, list[float]]]:
    """Rows of CPU per message (keyed and not, per store) vs the bare calls; wall times;
    per case, a tool round's ratio spell by spell."""
    with (
        llm_server_process(0.0) as base,
        redis_server() as (port, _root),
        TemporaryDirectory() as tmp,
    ):
        cpu, walls = asyncio.run(
            _measure(base, calls, spells, stores, f"redis://127.0.0.1:{port}/0", Path(tmp))
        )
    bare = cpu["bare"]
    bare_rounds = [tool - plain for tool, plain in bare]
    rows: list[Row] = []
    paired: dict[str, list[float]] = {}
    for name, measured in cpu.items():
        if name == "bare":
            continue
        rounds = [tool - plain for tool, plain in measured]
        paired[name] = [ours / theirs for ours, theirs in zip(rounds, bare_rounds, strict=True)]
        rows += [
            Row(
                f"a tool round, {name}",
                statistics.median(rounds),
                statistics.median(bare_rounds),
                "MCP call + POST",
            ),
            Row(
                f"message with a round, {name}",
                statistics.median([t for t, _p in measured]),
                statistics.median([t for t, _p in bare]),
                "MCP call + 2 POSTs",
            ),
            Row(
                f"message without, {name}",
                statistics.median([p for _t, p in measured]),
                statistics.median([p for _t, p in bare]),
                "1 POST",
            ),
        ]
    return rows, walls, paired


def main() -> None:
    """Print the CPU table and the wall-time percentiles."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--spells", type=int, default=9)
    parser.add_argument("--stores", default="SQLite,Redis")
    args = parser.parse_args()
    rows, walls, paired = run(args.calls, tuple(args.stores.split(",")), args.spells)
    print_table("CPU per message with one MCP tool round (medians over the spells)", rows)
    print("\na tool round against the bare one of the same spell")
    for name, ratios in paired.items():
        shown = " ".join(f"{r:.2f}" for r in ratios)
        print(f"{name:<32} median {statistics.median(ratios):.2f}x  spells {shown}")
    print("\nwall time per message (one tool round: 2 model calls + 1 MCP call)")
    for name, values in walls.items():
        p50, p99 = _percentile(values, 50), _percentile(values, 99)
        print(f"{name:<32} p50 {seconds(p50):>11}  p99 {seconds(p99):>11}")
    bare50, bare99 = _percentile(walls["bare"], 50), _percentile(walls["bare"], 99)
    for name in [n for n in walls if n != "bare"]:
        p50, p99 = _percentile(walls[name], 50), _percentile(walls[name], 99)
        print(
            f"added by {name:<14} p50 {seconds(p50 - bare50):>11}  p99 {seconds(p99 - bare99):>11}"
        )


if __name__ == "__main__":
    main()
