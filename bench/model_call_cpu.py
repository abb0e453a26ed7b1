"""CPU per model call: the adapter (a lean aiohttp client) vs the SDK's `chat.completions.create`.

Both against the model double in its own process, so only the client's CPU counts; the
history grows from 2 to 200 messages. Run: `python -m bench.model_call_cpu`.
"""

from __future__ import annotations

import asyncio
import time

from bench.common import Row
from secretaries_core.llm.base import CallUsage, ChatRequest, ChatTurn
from secretaries_core.llm.openai_client import OpenAIAdapter, OpenAIClients
from tests.llm_server import llm_server_process


async def _measure(url: str, size: int, calls: int) -> tuple[float, float]:
    clients = OpenAIClients(base_url=url, api_key="k", timeout=30, max_retries=0)
    adapter = OpenAIAdapter("m", clients)
    history = [
        ChatTurn("user" if i % 2 == 0 else "assistant", f"message number {i} " * 10)
        for i in range(size)
    ]
    request = ChatRequest("s", "You are s.", history, ["hello"], {"temperature": 0.2})
    import openai

    client = openai.AsyncOpenAI(
        base_url=url, api_key="k", max_retries=0, http_client=openai.DefaultAioHttpClient()
    )

    async def ours() -> None:
        _ = [p async for p in adapter.pieces(request, stream=False, usage=CallUsage())]

    async def sdk() -> None:
        await client.chat.completions.create(
            model="m",
            messages=request.messages(),
            extra_body={"temperature": 0.2},  # type: ignore[arg-type]
        )

    out = []
    for call in (ours, sdk):
        await call()
        started = time.process_time()
        for _ in range(calls):
            await call()
        out.append((time.process_time() - started) / calls)
    await clients.aclose()
    await client.close()
    return out[0], out[1]


def run(sizes: tuple[int, ...] = (2, 20, 100, 200), calls: int = 100) -> list[Row]:
    """One row per history size: CPU seconds per call, ours vs the SDK's create()."""
    rows = []
    with llm_server_process(0.0) as url:
        for size in sizes:
            ours, sdk = asyncio.run(_measure(url, size, calls))
            rows.append(Row(f"model call, {size} messages", ours, sdk, "SDK create()"))
    return rows


if __name__ == "__main__":
    for row in run():
        print(
            f"{row.name:<28} ours {row.ours * 1000:6.2f} ms CPU  "
            f"{row.baseline_name} {row.baseline * 1000:6.2f} ms  ratio {row.ratio:.2f}"
        )
