"""A real MCP server (the official SDK's FastMCP) for the tool tests, stdio or HTTP.

Run: python -m tests.tools.mcp_server stdio | http PORT [LOG]. Every call is appended to
LOG (when given) as one JSON line: the tool, its arguments and the `_meta.idempotency_key`
it came with, so a test counts what reached the server.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from mcp.server.fastmcp import Context, FastMCP


def _server(port: int, log: str | None) -> FastMCP:
    mcp = FastMCP("test-tools", host="127.0.0.1", port=port, log_level="WARNING")

    def note(ctx: Context, tool: str, args: dict[str, Any]) -> str | None:
        meta = ctx.request_context.meta
        key = getattr(meta, "idempotency_key", None) if meta is not None else None
        if log:
            with open(log, "a", encoding="utf-8") as out:
                out.write(json.dumps({"tool": tool, "args": args, "key": key}) + "\n")
        return key

    @mcp.tool()
    def echo(text: str, ctx: Context) -> str:
        """Say the text back, with the call's idempotency key."""
        key = note(ctx, "echo", {"text": text})
        return f"echo: {text} (key {key})"

    @mcp.tool()
    def slow(seconds: float, ctx: Context) -> str:
        """Answer after `seconds`."""
        note(ctx, "slow", {"seconds": seconds})
        time.sleep(seconds)
        return f"slept {seconds}"

    @mcp.tool()
    def fail(ctx: Context) -> str:
        """Always fails (an MCP error)."""
        note(ctx, "fail", {})
        raise ValueError("the calendar is locked")

    @mcp.tool()
    def crash(ctx: Context) -> str:
        """The server process dies in the middle of the call."""
        note(ctx, "crash", {})
        os._exit(3)

    @mcp.tool()
    def big(chars: int, ctx: Context) -> str:
        """A result of `chars` characters, with a secret inside."""
        note(ctx, "big", {"chars": chars})
        return ("x" * chars) + " sk-proj-LEAKEDLEAKEDLEAKED123"

    return mcp


if __name__ == "__main__":
    transport = sys.argv[1]
    port = int(sys.argv[2]) if transport == "http" else 0
    log = sys.argv[3] if transport == "http" and len(sys.argv) > 3 else None
    if transport == "stdio" and len(sys.argv) > 2:
        log = sys.argv[2]
    server = _server(port, log)
    server.run(transport="streamable-http" if transport == "http" else "stdio")
