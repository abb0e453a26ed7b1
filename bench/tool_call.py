"""CPU and latency of a tool round: `ahandle` with an MCP tool vs the same calls made bare.

The model double and the MCP server (the official SDK's FastMCP, over stdio) run in
processes of their own, so only this process's CPU counts. One message = the model asks
for one MCP call (`echo`), the call runs, the model is asked again with the result and
answers. Through `Orchestrator.ahandle` on the embedded SQLite store and on Redis (the
workers' store in production), with an update id
(`keyed`: the exactly-once ledger records the round, the call's start and its result) and
without. Baseline in the same run: the same two model request bodies POSTed with a bare
aiohttp session, plus the same `call_tool` on a bare `mcp` SDK `ClientSession`.

Reported: CPU per message (the best of 5 rounds; target ≤ 1.5x the bare calls), and the
wall time per message, p50 and p99, ours and bare — what a tool round adds.

Run: python -m bench.tool_call [--calls 200] [--stores SQLite,Redis]
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
ROUNDS = 5
PROMPT = "You are alice, a helpful secretary who answers briefly."
SERVER = f"{sys.executable} -m tests.tools.mcp_server stdio"


def _text(i: int) -> str:
    return f"message {i} TOOLS: " + json.dumps([[["cal__echo", {"text": f"note {i}"}]]])


async def _ours(orch: Orchestrator, calls: int, keyed: bool) -> tuple[float, list[float]]:
    await orch.ahandle(1, _text(-1))  # warm: the MCP session, pools, caches
    best, walls = float("inf"), []
    per_round = max(1, calls // ROUNDS)
    for r in range(ROUNDS):
        started = time.process_time()
        for i in range(r * per_round, (r + 1) * per_round):
            began = time.perf_counter()
            key = f"b{keyed}{i}" if keyed else None
            await orch.ahandle(1 + i % 20, _text(i), idempotency_key=key)
            walls.append(time.perf_counter() - began)
        best = min(best, (time.process_time() - started) / per_round)
    return best, walls


async def _bare(base: str, calls: int, tools: list[dict[str, Any]]) -> tuple[float, list[float]]:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    words = SERVER.split()
    params = StdioServerParameters(command=words[0], args=words[1:], cwd=str(ROOT))
    with open("/dev/null", "w") as errlog:
        async with (
            stdio_client(params, errlog) as (read, write),
            ClientSession(read, write) as mcp_session,
            aiohttp.ClientSession() as http,
        ):
            await mcp_session.initialize()
            # A client offering the server's tools to a model lists them first (so does
            # ours); the SDK then checks each result against the tool's output schema.
            await mcp_session.list_tools()

            async def one(i: int) -> None:
                ask = [{"role": "system", "content": PROMPT}, {"role": "user", "content": _text(i)}]
                body = {"model": "m", "tools": tools, "messages": ask}
                async with http.post(f"{base}/chat/completions", json=body) as response:
                    calls_doc = (await response.json())["choices"][0]["message"]["tool_calls"]
                call = calls_doc[0]
                result = await mcp_session.call_tool(
                    "echo", json.loads(call["function"]["arguments"]),
                    meta={"idempotency_key": f"bare:{i}"},
                )  # fmt: skip
                text = result.content[0].text  # type: ignore[union-attr]
                again = [
                    *ask,
                    {"role": "assistant", "content": None, "tool_calls": calls_doc},
                    {"role": "tool", "tool_call_id": call["id"], "content": text},
                ]
                body = {"model": "m", "tools": tools, "messages": again}
                async with http.post(f"{base}/chat/completions", json=body) as response:
                    await response.json()

            await one(-1)
            best, walls = float("inf"), []
            per_round = max(1, calls // ROUNDS)
            for r in range(ROUNDS):
                started = time.process_time()
                for i in range(r * per_round, (r + 1) * per_round):
                    began = time.perf_counter()
                    await one(i)
                    walls.append(time.perf_counter() - began)
                best = min(best, (time.process_time() - started) / per_round)
            return best, walls


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def run(
    calls: int = 200, stores: tuple[str, ...] = ("SQLite", "Redis")
) -> tuple[list[Row], dict[str, list[float]]]:
    """Rows of CPU per message (keyed and not, per store) vs the bare calls; wall times."""
    rows: list[Row] = []
    walls: dict[str, list[float]] = {}
    bare: tuple[float, list[float]] | None = None
    with llm_server_process(0.0) as base, redis_server() as (port, _root):
        for kind in stores:
            url = f"redis://127.0.0.1:{port}/0" if kind == "Redis" else None
            found, tools = _measure_ours(base, calls, url)
            if bare is None:
                bare = asyncio.run(_bare(base, calls, tools))
            for label, (cpu, times) in found.items():
                name = f"tool round CPU, {kind}, ahandle{label}"
                rows.append(Row(name, cpu, bare[0], "bare MCP call + 2 POSTs"))
                walls[f"{kind} ahandle{label}"] = times
    assert bare is not None
    walls["bare"] = bare[1]
    return rows, walls


def _measure_ours(
    base: str, calls: int, redis_url: str | None
) -> tuple[dict[str, tuple[float, list[float]]], list[dict[str, Any]]]:
    with TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'tools.db'}")
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
            if redis_url is None
            else open_context_store(
                redis_url, policy=settings.context_policy, prefix=f"tools{time.monotonic_ns()}:"
            )
        )
        orch = Orchestrator(registry, store, settings)

        async def measure() -> tuple[tuple[float, list[float]], tuple[float, list[float]], Any]:
            try:
                plain = await _ours(orch, calls, keyed=False)
                keyed = await _ours(orch, calls, keyed=True)
                offered = await orch.toolbox.offered(snapshot(registry.get_secretary("alice")))
                return plain, keyed, [o.definition for o in offered.values()]
            finally:
                await orch.aclose()

        plain, keyed, tools = asyncio.run(measure())
        orch.close()
        store.close()
        engine.dispose()
    return {"": plain, " keyed (ledger)": keyed}, tools


def main() -> None:
    """Print the CPU table and the wall-time percentiles."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--stores", default="SQLite,Redis")
    args = parser.parse_args()
    rows, walls = run(args.calls, tuple(args.stores.split(",")))
    print_table("CPU per message with one MCP tool round", rows)
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
