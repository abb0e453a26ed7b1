"""One tool call of any kind: its own timeout, the result cut and scrubbed, errors as one line.

The tool's `--timeout` is what fires (not a built-in limit), and a failure never raises
past here: the result says it failed, in one line the model can read.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from secretaries_core.errors import InvalidInput
from secretaries_core.redact import scrub
from secretaries_core.tools.errors import ToolError
from secretaries_core.tools.http_tool import Post, aiohttp_post, call_http
from secretaries_core.tools.mcp_tool import McpServers
from secretaries_core.tools.spec import ToolSpec

DEFAULT_RESULT_CHARS = 16_000


@dataclass(frozen=True)
class ToolResult:
    """What one call gave: the text the model reads, and how it went."""

    text: str
    ok: bool
    seconds: float
    cut: bool = False

    @property
    def outcome(self) -> str:
        """`ok`, or `failed` (the metric label)."""
        return "ok" if self.ok else "failed"


class ToolCaller:
    """Calls tools; owns this process's MCP sessions."""

    def __init__(self, result_chars: int = DEFAULT_RESULT_CHARS, post: Post = aiohttp_post) -> None:
        self.result_chars = result_chars
        self.post = post  # how HTTP tools are reached (http_tool.py says why there are two)
        self.mcp = McpServers()

    async def call(
        self,
        spec: ToolSpec,
        arguments: dict[str, Any],
        call_id: str,
        tool: str | None = None,
        *,
        timeout: float | None = None,
    ) -> ToolResult:
        """Call the tool once (an MCP server's `tool`) within `timeout` (else its own);
        never raises for the tool's failure."""
        limit = spec.timeout if timeout is None else timeout
        started = time.monotonic()
        try:
            if spec.kind == "mcp":
                if not tool:
                    raise ToolError(f"{spec.name} is an MCP server: name one of its tools")
                await self.mcp.open(spec)  # starting a server is not the call's time
                started = time.monotonic()
            async with asyncio.timeout(limit):
                if spec.kind == "http":
                    text = await call_http(spec, arguments, call_id, self.post)
                else:
                    assert tool is not None
                    text = await self.mcp.call(spec, tool, arguments, call_id)
        except TimeoutError:
            if spec.kind == "mcp":
                await self.mcp.forget(spec)  # a server that hung gets no next call
            return self._failed(f"timed out after {limit:g}s", started)
        except (ToolError, InvalidInput) as exc:
            return self._failed(str(exc), started)
        return self._done(text, started)

    def _done(self, text: str, started: float) -> ToolResult:
        clean = scrub(text)
        cut = len(clean) > self.result_chars
        if cut:
            clean = (
                clean[: self.result_chars]
                + f"\n[result cut at {self.result_chars} of {len(text)} characters]"
            )
        return ToolResult(clean, True, time.monotonic() - started, cut)

    def _failed(self, reason: str, started: float) -> ToolResult:
        line = scrub(reason).strip().splitlines()
        return ToolResult(
            "error: " + (line[0][:300] if line else "failed"), False, time.monotonic() - started
        )

    async def aclose(self) -> None:
        """Close this loop's MCP sessions."""
        await self.mcp.aclose()
