"""An OpenAI-compatible chat-completions server on loopback, scripted by tests and benchmarks.

Real HTTP (aiohttp), real SSE: the `openai` SDK talks to it exactly as to a provider.
Each reply says how many messages the request held, so tests can prove what the model saw:
`<system prompt> re: <last message> (<n> earlier)`.

`window` makes it refuse (400 context_length_exceeded) requests holding more characters;
`usage_sent` lists the usage it reported. Behaviours (per request, from `steps` first, then
`default`): `ok`, an HTTP status as a
string (`"500"`, `"429"`, `"400"`), `too-long` (400 "context_length_exceeded"), `malformed`
(200 with a body that is not JSON), `empty` (no choices), `dirty` (a reply holding a NUL and
a lone surrogate), `keyecho` (401 repeating the API key, as OpenAI does), `leak` (400
repeating `Script.leak`), `close`
(connection dropped half
way through the body), `sse-close` (an event stream cut before its first piece),
`trickle` (one byte every 0.5 s), `hang` (never answers).

Tools: when a request offers `tools` and its last user message holds `TOOLS:` followed by
a JSON list of rounds — each a list of `[function, arguments]` — it answers round r (r =
the assistant `tool_calls` messages after that user message) with those calls (ids
`call_<r>_<i>`; streamed as OpenAI does: the id and name first, then the arguments in
pieces with no id and `content: ""`). After the last round, or with `tool_choice: "none"`,
it answers `results: <each tool message after the user message, joined by " / ">`.

A judge's request (evals/judge.py prompts) is answered as a judge: see `judged`.

Run alone for benchmarks: `python -m tests.llm_server --port 8001 --latency 1.0`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Script:
    """What the server does, and what it saw."""

    latency: float = 0.0
    default: str = "ok"
    steps: list[str] = field(default_factory=list)
    chunk_delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0
    record: bool = True
    # When set, requests whose messages hold more characters are refused as too long.
    window: int | None = None
    usage_sent: list[dict[str, int]] = field(default_factory=list)
    # Put before every reply: tells apart the answers of two servers to one question.
    tag: str = ""
    # What behaviour `leak` repeats in its error (secrets, for the scrubber's tests).
    leak: str = ""
    # When set, every answer waits until the event is set (a call held in flight).
    gate: threading.Event | None = None
    # When set, answers wait until this many requests are in flight at once (or until
    # `hold_timeout`, after which nobody waits): concurrency proven by a condition.
    hold_until: int = 0
    hold_timeout: float = 30.0
    held: asyncio.Event | None = None

    def next_behaviour(self) -> str:
        """The behaviour for the next request."""
        return self.steps.pop(0) if self.steps else self.default


def reply_text(body: dict[str, Any]) -> str:
    """Name the system prompt and the last message, and count the ones between."""
    messages = body["messages"]
    return f"<{messages[0]['content']}> re: {messages[-1]['content']} ({len(messages) - 2} earlier)"


def judged(body: dict[str, Any]) -> str | None:
    """The judge's answer when the request is a judge's (secretaries_core/evals/judge.py):
    FAIL for a reply holding "BAD", an unreadable verdict for one holding "GARBAGE", else
    PASS; comparing two replies, the one without "BAD" wins."""
    system = str(body["messages"][0].get("content") or "")
    said = str(body["messages"][-1].get("content") or "")
    if system.startswith("You grade one reply"):
        graded = said.split("Reply to grade:", 1)[-1]
        if "GARBAGE" in graded:
            return "Looks fine to me, I suppose."
        return "FAIL: rude to the user" if "BAD" in graded else "PASS: polite and on topic"
    if system.startswith("You compare two replies"):
        a, b = said.split("Reply A:", 1)[-1].split("Reply B:", 1)
        if ("BAD" in a) == ("BAD" in b):
            return "TIE: as good as each other"
        return "B: A is rude" if "BAD" in a else "A: B is rude"
    return None


def tool_round(body: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The calls to answer with (see the module docstring), or None for a text reply."""
    if not body.get("tools") or body.get("tool_choice") == "none":
        return None
    messages = body["messages"]
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    text = str(messages[last_user]["content"])
    if "TOOLS:" not in text:
        return None
    rounds = json.loads(text.split("TOOLS:", 1)[1].strip())
    done = sum(1 for m in messages[last_user:] if m["role"] == "assistant" and m.get("tool_calls"))
    if done >= len(rounds):
        return None
    return [
        {
            "id": f"call_{done}_{i}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(args)},
        }
        for i, (name, args) in enumerate(rounds[done])
    ]


def tool_results_text(body: dict[str, Any]) -> str | None:
    """`results: …` when the request holds tool results after its last user message."""
    messages = body["messages"]
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    results = [str(m["content"]) for m in messages[last_user:] if m["role"] == "tool"]
    return "results: " + " / ".join(results) if results else None


def _usage(body: dict[str, Any], text: str) -> dict[str, int]:
    prompt = sum(len(str(m.get("content", ""))) // 4 + 4 for m in body["messages"])
    completion = len(text) // 4 + 1
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def make_app(script: Script) -> web.Application:
    """The aiohttp application serving `/v1/chat/completions`."""

    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if script.record:
            script.requests.append(body)
            script.headers.append(dict(request.headers))
        behaviour = script.next_behaviour()
        if "fail" in str(body.get("model", "")):
            behaviour = "500"  # a model name with "fail" in it is always down (rollout tests)
        if script.window is not None and behaviour == "ok":
            size = sum(len(str(m.get("content", ""))) for m in body["messages"])
            behaviour = "too-long" if size > script.window else behaviour
        script.in_flight += 1
        script.peak_in_flight = max(script.peak_in_flight, script.in_flight)
        try:
            if behaviour == "hang":
                await asyncio.sleep(3600)
            if script.latency:
                await asyncio.sleep(script.latency)
            if script.hold_until:
                await _hold(script)
            if script.gate is not None:  # held until the test opens it
                await asyncio.get_running_loop().run_in_executor(None, script.gate.wait, 60)
            return await _answer(request, body, behaviour, script)
        finally:
            script.in_flight -= 1

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", completions)
    return app


async def _hold(script: Script) -> None:
    """Wait until `hold_until` requests are in flight together; once reached (or once
    one waiter gave up), every request goes on at once."""
    if script.held is None:
        script.held = asyncio.Event()
    if script.in_flight >= script.hold_until:
        script.held.set()
    try:
        await asyncio.wait_for(script.held.wait(), script.hold_timeout)
    except TimeoutError:
        script.held.set()


async def _answer(
    request: web.Request, body: dict[str, Any], behaviour: str, script: Script
) -> web.StreamResponse:
    text = "bad \ud800 and \x00 here" if behaviour == "dirty" else script.tag + reply_text(body)
    calls = tool_round(body)
    if behaviour == "ok" and calls is None:
        text = tool_results_text(body) or text
    if behaviour == "ok":
        text = judged(body) or text
    if behaviour.isdigit():
        status = int(behaviour)
        headers = {"Retry-After": "0"} if status == 429 else {}
        return web.json_response(
            {"error": {"message": f"scripted {status}", "type": "scripted"}},
            status=status,
            headers=headers,
        )
    if behaviour == "too-long":
        return web.json_response(
            {
                "error": {
                    "message": "This model's maximum context length is 100 tokens",
                    "code": "context_length_exceeded",
                }
            },
            status=400,
        )
    if behaviour == "leak":
        # A gateway's 400 that repeats whatever it was configured with (`script.leak`).
        return web.json_response(
            {"error": {"message": f"upstream refused: {script.leak}", "code": "bad"}}, status=400
        )
    if behaviour == "keyecho":
        # OpenAI's own answer to a wrong key repeats it back.
        key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        return web.json_response(
            {
                "error": {
                    "message": f"Incorrect API key provided: {key}. Find yours at example.com",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            },
            status=401,
        )
    if behaviour == "leaky":
        # A provider (or proxy) echoing its upstream URL, credentials included.
        return web.json_response(
            {"error": {"message": "upstream postgresql://svc:hunter2@db.internal/x failed"}},
            status=400,
        )
    if behaviour == "malformed":
        return web.Response(text="{not json", content_type="application/json")
    completion: dict[str, Any] = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": body.get("model", "test"),
        "choices": []
        if behaviour == "empty"
        else [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(body, text),
    }
    if calls is not None and behaviour == "ok":
        completion["choices"] = [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "tool_calls": calls},
                "finish_reason": "tool_calls",
            }
        ]
        if body.get("stream"):
            return await _stream_calls(request, body, completion, calls)
    if completion["choices"] and script.record:
        script.usage_sent.append(completion["usage"])
    if behaviour in ("close", "trickle"):
        data = json.dumps(completion).encode()
        response = web.StreamResponse(
            headers={"Content-Type": "application/json", "Content-Length": str(len(data))}
        )
        await response.prepare(request)
        if behaviour == "close":
            await response.write(data[: len(data) // 2])
            assert request.transport is not None
            request.transport.close()
            return response
        for i in range(len(data)):
            await response.write(data[i : i + 1])
            await asyncio.sleep(0.5)
        return response
    if behaviour == "sse-close":
        # A stream that breaks before its first piece (a proxy's idle cut, a reset).
        broken = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await broken.prepare(request)
        await broken.write(b": opening\n\n")
        assert request.transport is not None
        request.transport.close()
        return broken
    if body.get("stream"):
        return await _stream(request, body, completion, text, script)
    return web.json_response(completion)


async def _stream(
    request: web.Request,
    body: dict[str, Any],
    completion: dict[str, Any],
    text: str,
    script: Script,
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    words = [w + " " for w in text.split(" ")]
    words[-1] = words[-1][:-1]

    async def send(payload: dict[str, Any]) -> None:
        await response.write(b"data: " + json.dumps(payload).encode() + b"\n\n")

    base = {k: completion[k] for k in ("id", "created", "model")}
    base["object"] = "chat.completion.chunk"
    if completion["choices"]:
        for word in words:
            await send({**base, "choices": [{"index": 0, "delta": {"content": word}}]})
            if script.chunk_delay:
                await asyncio.sleep(script.chunk_delay)
    await send({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if (body.get("stream_options") or {}).get("include_usage"):
        await send({**base, "choices": [], "usage": completion["usage"]})
    await response.write(b"data: [DONE]\n\n")
    return response


async def _stream_calls(
    request: web.Request,
    body: dict[str, Any],
    completion: dict[str, Any],
    calls: list[dict[str, Any]],
) -> web.StreamResponse:
    """Tool calls as OpenAI streams them: per call, the id and name first, then the
    arguments split in pieces that carry no id, and `content: ""` throughout."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    base = {k: completion[k] for k in ("id", "created", "model")}
    base["object"] = "chat.completion.chunk"

    async def send(delta: dict[str, Any], finish: str | None = None) -> None:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        payload = {**base, "choices": [choice]}
        await response.write(b"data: " + json.dumps(payload).encode() + b"\n\n")

    await send({"role": "assistant", "content": ""})
    for index, call in enumerate(calls):
        head = {"index": index, "id": call["id"], "type": "function"}
        await send(
            {
                "content": "",
                "tool_calls": [
                    {**head, "function": {"name": call["function"]["name"], "arguments": ""}}
                ],
            }
        )
        arguments = call["function"]["arguments"]
        for start in range(0, len(arguments), 5):
            piece = {"index": index, "function": {"arguments": arguments[start : start + 5]}}
            await send({"content": "", "tool_calls": [piece]})
    await send({}, "tool_calls")
    if (body.get("stream_options") or {}).get("include_usage"):
        await response.write(
            b"data: "
            + json.dumps({**base, "choices": [], "usage": completion["usage"]}).encode()
            + b"\n\n"
        )
    await response.write(b"data: [DONE]\n\n")
    return response


@contextmanager
def llm_server(script: Script | None = None) -> Iterator[tuple[str, Script]]:
    """Run the server on a free loopback port in a thread; yield (base URL, script)."""
    from tests.servers import app_in_thread

    script = script or Script()
    with app_in_thread(make_app(script), name="llm-server", backlog=4096) as port:
        yield f"http://127.0.0.1:{port}/v1", script


@contextmanager
def llm_server_process(latency: float, chunk_delay: float = 0.0) -> Iterator[str]:
    """The server in a process of its own (benchmarks, worker farms); yields its base URL."""
    import os
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    from tests.servers import free_port

    port = free_port()
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.llm_server",
            "--port",
            str(port),
            "--latency",
            str(latency),
            "--chunk-delay",
            str(chunk_delay),
        ],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{base}/peak", timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"{base}/v1"
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    """Serve until killed (for benchmarks, in a process of its own)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--chunk-delay", type=float, default=0.0)
    args = parser.parse_args()
    script = Script(latency=args.latency, chunk_delay=args.chunk_delay, record=False)

    async def peak(request: web.Request) -> web.Response:
        if request.method == "DELETE":
            script.peak_in_flight = 0
        return web.json_response({"peak_in_flight": script.peak_in_flight})

    async def default(request: web.Request) -> web.Response:
        # Faults from outside: POST /default with the behaviour (`500`, `ok`, ...).
        script.default = (await request.text()).strip() or "ok"
        return web.json_response({"default": script.default})

    app = make_app(script)
    app.router.add_route("*", "/peak", peak)
    app.router.add_post("/default", default)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None, backlog=4096)


if __name__ == "__main__":
    main()
