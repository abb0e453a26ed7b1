"""MCP servers through the official `mcp` SDK (extra `mcp`): stdio and Streamable HTTP.

One session per server per process (per event loop), opened on first use and kept by a
task of its own, since the SDK's transports must be entered and left by one task. A
session whose server died (a crashed process, a lost connection) is dropped, and the next
call opens a new one; a call is never sent twice on its own (the caller decides: the call
id travels as `_meta.idempotency_key`, so a server can recognise a resend). A server that
hangs is bounded by the call's own timeout (the caller's `asyncio.timeout`).

Hand-written around the SDK only for that ownership: no library keeps MCP sessions open
across calls of many tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
from dataclasses import dataclass
from typing import Any

from secretaries_core.errors import InvalidInput
from secretaries_core.plumbing.loops import PerLoop
from secretaries_core.tools.errors import ToolError
from secretaries_core.tools.http_tool import env_headers
from secretaries_core.tools.spec import ToolSpec

log = logging.getLogger(__name__)
EXTRA = "pip install 'secretaries-platform[mcp]' (or '.[mcp]' from a checkout)"
# Starting a server (a stdio process importing its SDK) is bounded apart from the call.
OPEN_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class McpTool:
    """One tool an MCP server offers."""

    name: str
    description: str
    input_schema: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """The document `tools show` lists."""
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
        }


def _sdk() -> Any:
    try:
        import mcp
    except ImportError:
        raise InvalidInput(f"MCP tools need the `mcp` extra: {EXTRA}") from None
    return mcp


class _Session:
    """One open session, kept by its own task until `close()` or until it dies."""

    def __init__(self, spec: ToolSpec) -> None:
        self.spec = spec
        self.session: Any = None
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._stop = asyncio.Event()
        self._task = asyncio.ensure_future(self._run())

    @property
    def alive(self) -> bool:
        return self.session is not None and not self._task.done()

    async def opened(self) -> Any:
        await asyncio.shield(self._ready)
        return self.session

    async def _run(self) -> None:
        mcp = _sdk()
        try:
            async with contextlib.AsyncExitStack() as stack:
                if self.spec.command:
                    from mcp.client.stdio import stdio_client

                    words = shlex.split(self.spec.command)
                    params = mcp.StdioServerParameters(command=words[0], args=words[1:])
                    errlog = stack.enter_context(open(os.devnull, "w"))  # noqa: SIM115
                    read, write = await stack.enter_async_context(stdio_client(params, errlog))
                else:
                    import httpx
                    from mcp.client.streamable_http import streamable_http_client

                    assert self.spec.url is not None
                    http = await stack.enter_async_context(
                        httpx.AsyncClient(
                            headers=env_headers(self.spec.headers),
                            # The SDK's own defaults: 30 s to connect, 5 min between events.
                            timeout=httpx.Timeout(30.0, read=300.0),
                            follow_redirects=True,
                        )
                    )
                    client = streamable_http_client(self.spec.url, http_client=http)
                    read, write, _session_id = await stack.enter_async_context(client)
                session = await stack.enter_async_context(mcp.ClientSession(read, write))
                await session.initialize()
                self.session = session
                self._ready.set_result(None)
                await self._stop.wait()
        except BaseException as exc:  # any way it ends, the callers hear of it
            if not self._ready.done():
                self._ready.set_exception(
                    exc if isinstance(exc, ToolError | InvalidInput) else _unreachable(exc)
                )
            elif not isinstance(exc, asyncio.CancelledError):
                log.warning("MCP server %s went away: %s", self.spec.name, _first_line(exc))
        finally:
            self.session = None

    async def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(self._task), 5)
        if not self._task.done():
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task


class McpServers:
    """The open MCP sessions of this process, one per server per event loop."""

    def __init__(self) -> None:
        self._sessions: PerLoop[dict[str, _Session]] = PerLoop(dict)
        self._closing: set[asyncio.Future[None]] = set()

    async def open(self, spec: ToolSpec) -> Any:
        """The server's session, opened now if it has none (within `OPEN_TIMEOUT_S`)."""
        try:
            async with asyncio.timeout(OPEN_TIMEOUT_S):
                return await self._session(spec)
        except TimeoutError:
            await self.forget(spec)
            raise ToolError(
                f"MCP server {spec.name} did not start within {OPEN_TIMEOUT_S:g}s"
            ) from None

    async def _session(self, spec: ToolSpec) -> Any:
        found = self._sessions.get()
        current = found.get(spec.name)
        if current is None or (current.session is None and current._ready.done()):
            if current is not None:
                await current.close()  # dead: a new one replaces it
            current = found[spec.name] = _Session(spec)
        try:
            return await current.opened()
        except BaseException:
            found.pop(spec.name, None)
            raise

    async def list_tools(self, spec: ToolSpec) -> list[McpTool]:
        """The server's tools (only `--allow`ed ones when given), discovered now."""
        session = await self.open(spec)
        try:
            async with asyncio.timeout(max(spec.timeout, OPEN_TIMEOUT_S)):
                listed = await session.list_tools()
        except (Exception, TimeoutError) as exc:
            await self.forget(spec)
            raise _unreachable(exc) from None
        tools = [
            McpTool(t.name, t.description or "", dict(t.inputSchema or {})) for t in listed.tools
        ]
        return [t for t in tools if not spec.allow or t.name in spec.allow]

    async def call(self, spec: ToolSpec, tool: str, arguments: dict[str, Any], call_id: str) -> str:
        """Call `tool` on the server once; its text, or `ToolError` (an MCP error too).

        The caller bounds it with the tool's timeout and then calls `forget`: a server that
        hung is not trusted with the next call."""
        if spec.allow and tool not in spec.allow:
            raise ToolError(f"tool {tool!r} is not allowed on {spec.name} (--allow)")
        session = await self._session(spec)
        from mcp.shared.exceptions import McpError

        try:
            result = await session.call_tool(tool, arguments, meta={"idempotency_key": call_id})
        except McpError as exc:
            from mcp.types import CONNECTION_CLOSED

            if exc.error.code == CONNECTION_CLOSED:  # the server died: a new session next
                await self.forget(spec)
                raise ToolError("MCP server unreachable (the connection closed)") from None
            # The server answered with an error: the session is fine.
            raise ToolError("MCP error: " + (_first_line(exc) or "the call failed")) from None
        except Exception as exc:
            # The connection broke (the server died?): the next call opens a new session.
            await self.forget(spec)
            raise _unreachable(exc) from None
        text = _text_of(result)
        if getattr(result, "isError", False):
            raise ToolError("MCP error: " + (_first_line(text) or "the tool failed"))
        return text

    async def forget(self, spec: ToolSpec) -> None:
        """Drop the server's session (if any): the next call opens a new one at once, and
        the old one is closed in the background (a hung server's process may take seconds
        to end, which no caller waits for)."""
        current = self._sessions.get().pop(spec.name, None)
        if current is not None:
            closing = asyncio.ensure_future(current.close())
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        """Close this loop's sessions (their servers' processes end with them)."""
        found = self._sessions.get()
        for session in list(found.values()):
            await session.close()
        found.clear()
        mine = [c for c in self._closing if c.get_loop() is asyncio.get_running_loop()]
        if mine:
            await asyncio.gather(*mine, return_exceptions=True)


def _text_of(result: Any) -> str:
    import json

    parts = [getattr(c, "text", None) for c in getattr(result, "content", None) or ()]
    texts = [p for p in parts if isinstance(p, str)]
    if texts:
        return "\n".join(texts)
    structured = getattr(result, "structuredContent", None)
    return json.dumps(structured, ensure_ascii=False) if structured is not None else ""


def _first_line(value: object) -> str:
    lines = str(value).strip().splitlines()
    return lines[0][:200] if lines else ""


def _unreachable(exc: BaseException) -> ToolError:
    detail = _first_line(exc) or type(exc).__name__
    return ToolError(f"MCP server unreachable ({type(exc).__name__}: {detail})")
