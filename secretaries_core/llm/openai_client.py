"""OpenAI-compatible chat completions over a lean aiohttp client.

The request is one JSON body POSTed to `{base_url}/chat/completions`, the reply one JSON
document or a stream of Server-Sent Events. Not the `openai` SDK: it validated every
message of the history against its TypedDicts and built a pydantic model per response
and per streamed chunk, which made a message's CPU grow with the conversation (35.7 ms at
100 messages through `create()`, 1.8 ms through its lower-level `post()`, about 0.4 ms
here; docs/performance.md). What the SDK gave and users rely on is kept: bearer auth,
retries of connection errors, timeouts, 408/409/429/5xx with its backoff (0.5 s doubling
to 8 s, or the server's `Retry-After`), streaming with usage, and its errors mapped onto
ours — here and nowhere else. One session (connection pool) per event loop; the
orchestrator's deadline bounds the whole call, retries included.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from secretaries_core.errors import ModelError, ModelUnavailable
from secretaries_core.llm.base import CallUsage, ChatRequest, ToolCall
from secretaries_core.plumbing import backoff
from secretaries_core.plumbing.loops import PerLoop
from secretaries_core.redact import mask_url

# Params that configure this library, not the model: never sent to the API.
LOCAL_PARAMS = frozenset(
    {
        "context_ttl",
        "context_max_messages",
        "instance_mode",
        "double_texting",
        "max_context_tokens",
        "summarize",
        "summary_model",
        "messages_per_day",
        "tokens_per_day",
        "price_prompt",
        "price_completion",
        "tools",
        "max_tool_rounds",
        "tool_timeout",
        "tool_calls_per_day",
    }
)
# Phrases providers use when the prompt does not fit the model's window.
# Wordings of "the prompt does not fit" by OpenAI, vLLM, llama.cpp's server and LiteLLM's
# proxy (`ContextWindowExceededError … context window exceeded`).
_TOO_LONG_HINTS = (
    "context_length_exceeded",
    "context length",
    "too long",
    "maximum context",
    "context window exceeded",
    "contextwindowexceeded",
    "exceeds the available context size",
)
NO_KEY = "unused"  # local servers need none; some proxies refuse an empty bearer
MAX_DETAIL_CHARS = 160
_SECRETS_IN_TEXT = re.compile(r"[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)
RETRY_STATUSES = frozenset({408, 409, 429})
FIRST_BACKOFF_S, MAX_BACKOFF_S, MAX_RETRY_AFTER_S = 0.5, 8.0, 60.0


class ContextTooLong(ModelError):
    """The provider refused the request because the prompt does not fit the model."""


class _Refused(Exception):
    """An HTTP error answer: its status, the provider's error document and headers."""

    def __init__(self, status: int, body: Any, headers: Any) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body
        self.headers = headers


class _NotACompletion(Exception):
    """The answer is not a chat completion (not JSON, or not the expected shape)."""


class _CutShort(Exception):
    """A stream that ended without `data: [DONE]` (a dropped connection, a proxy's cut)."""


class OpenAIClients:
    """The HTTP sessions of one orchestrator, one per event loop, made on first use."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None,
        timeout: float,
        max_retries: int,
        max_connections: int = 1000,
    ) -> None:
        self.base_url = base_url
        self.masked_url = mask_url(base_url)
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_connections = max_connections
        self.headers = {
            "Authorization": f"Bearer {api_key or NO_KEY}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        self._clients: PerLoop[Any] = PerLoop(self._make)

    def _make(self) -> Any:
        import aiohttp

        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.max_connections),
            # Per connect and per read, as the SDK did; the whole call is bounded by the
            # orchestrator's deadline.
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=self.timeout, sock_read=self.timeout
            ),
            headers=self.headers,
        )

    def get(self) -> Any:
        """The running loop's `aiohttp.ClientSession`."""
        return self._clients.get()

    async def aclose(self) -> None:
        """Close the running loop's session."""
        await self._clients.aclose_current(lambda session: session.close())

    def close(self) -> None:
        """Close every loop's session (from outside any loop)."""
        self._clients.close_all(lambda session: session.close())

    async def post(self, body: dict[str, Any] | bytes, *, stream: bool) -> Any:
        """POST `body`; the open response (status 200), after the retries the SDK made.

        Retried: connection errors, timeouts, 408, 409, 429 and 5xx, at most
        `max_retries` times, waiting `Retry-After` when the server says (up to 60 s), else
        0.5 s doubling to 8 s (with jitter). Anything else raises at once.
        """
        import aiohttp

        data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        session = self.get()
        attempt = 0
        while True:
            try:
                response = await session.post(self.url, data=data)
            except (aiohttp.ClientConnectionError, TimeoutError):
                if attempt >= self.max_retries:
                    raise
                await asyncio.sleep(_backoff(attempt, None))
                attempt += 1
                continue
            if response.status == 200:
                return response
            try:
                raw = await response.read()
            except (aiohttp.ClientError, TimeoutError):
                raw = b""
            finally:
                response.release()
            retry = response.status in RETRY_STATUSES or response.status >= 500
            if not retry or attempt >= self.max_retries:
                raise _Refused(response.status, _error_body(raw), response.headers)
            await asyncio.sleep(_backoff(attempt, response.headers))
            attempt += 1


class OpenAIAdapter:
    """One model on an OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp, ...)."""

    def __init__(self, model: str, clients: OpenAIClients) -> None:
        self.model = model
        self.clients = clients

    def _body(self, request: ChatRequest, *, stream: bool) -> bytes:
        """The JSON body as sent (the server is the judge of the params); the messages are
        spliced in already encoded (`ChatRequest.messages_json`)."""
        head = {k: v for k, v in request.params.items() if k not in LOCAL_PARAMS}
        head.pop("messages", None)
        head["model"] = self.model
        if request.tools:
            head["tools"] = list(request.tools)
            if request.tool_choice:
                head["tool_choice"] = request.tool_choice
        if stream:
            head |= {"stream": True, "stream_options": {"include_usage": True}}
        text = json.dumps(head, ensure_ascii=False)
        return (text[:-1] + ', "messages": ' + request.messages_json() + "}").encode()

    async def pieces(
        self, request: ChatRequest, *, stream: bool, usage: CallUsage | None = None
    ) -> AsyncIterator[str]:
        """Ask the server; stream with SSE when `stream`, else one JSON reply. A stream that
        breaks before its first piece is asked again (within the client's retries)."""
        import aiohttp

        produced = False
        try:
            if not stream:
                response = await self.clients.post(self._body(request, stream=False), stream=False)
                try:
                    raw = await response.read()
                finally:
                    response.release()
                completion = _completion(raw)
                _take_usage(completion, usage)
                choices = completion["choices"]
                first = choices[0] if choices else None
                if isinstance(first, dict) and first.get("finish_reason") == "length" and usage:
                    usage.truncated = True
                message = first.get("message") if isinstance(first, dict) else None
                content = message.get("content") if isinstance(message, dict) else None
                calls = _whole_calls(message) if isinstance(message, dict) else []
                if calls and usage is not None:
                    usage.tool_calls = calls
                    if isinstance(content, str) and content:
                        yield content
                    return
                if not isinstance(content, str) or not content:
                    raise ModelError(f"{self.model}: the reply has no text")
                yield content
                return
            body = self._body(request, stream=True)
            attempt = 0
            while True:
                response = await self.clients.post(body, stream=True)
                streamed = _StreamedCalls()
                try:
                    async for chunk in _events(response):
                        # With include_usage the last chunk carries the counts, no choices.
                        _take_usage(chunk, usage)
                        for choice in chunk.get("choices") or ():
                            if not isinstance(choice, dict):
                                continue
                            if choice.get("finish_reason") == "length" and usage is not None:
                                usage.truncated = True
                            delta = choice.get("delta")
                            if not isinstance(delta, dict):
                                continue
                            if delta.get("tool_calls"):
                                streamed.add(delta["tool_calls"])
                            content = delta.get("content")
                            if isinstance(content, str) and content:
                                produced = True
                                yield content
                    break
                except (
                    aiohttp.ClientConnectionError,
                    aiohttp.ClientPayloadError,
                    TimeoutError,
                    _CutShort,
                    _Refused,
                ) as exc:
                    # Broken before the first piece (a dropped connection, a cut stream, an
                    # in-band server error): nothing was shown, so it is asked again like
                    # a connection error; after a piece, the caller decides.
                    server_side = not isinstance(exc, _Refused) or exc.status >= 500
                    if produced or not server_side or attempt >= self.clients.max_retries:
                        raise
                    await asyncio.sleep(_backoff(attempt, None))
                    attempt += 1
                finally:
                    response.release()
            found = streamed.whole()
            if found and usage is not None:
                usage.tool_calls = found
            elif not produced:
                raise ModelError(f"{self.model}: the reply has no text")
        except ModelError:
            raise
        except Exception as exc:
            raise self._translate(exc) from exc

    def _translate(self, exc: Exception) -> ModelError:
        import aiohttp

        where = f"{self.model} at {self.clients.masked_url}"
        refused = _connect_failure(exc)
        if refused is not None:
            return ModelUnavailable(f"{where}: cannot connect ({refused})")
        if isinstance(exc, TimeoutError):
            return ModelUnavailable(f"{where}: no reply within {self.clients.timeout:g}s")
        if isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
            return ModelUnavailable(f"{where}: unreachable ({type(exc).__name__})")
        if isinstance(exc, _Refused):
            status = exc.status
            detail = _detail(exc.body)
            if status in RETRY_STATUSES or status >= 500:
                return ModelUnavailable(
                    f"{where}: HTTP {status} after {self.clients.max_retries + 1} attempt(s)"
                    f"{detail}"
                )
            if status == 401 and not self.clients.api_key:
                return ModelError(
                    f"{where}: HTTP 401, no API key: set SECRETARIES_OPENAI_API_KEY (or "
                    "OPENAI_API_KEY), or the provider's --api-key-env variable"
                )
            if status in (400, 413) and any(h in detail.lower() for h in _TOO_LONG_HINTS):
                return ContextTooLong(f"{where}: HTTP {status}, the prompt is too long{detail}")
            return ModelError(f"{where}: HTTP {status}{detail}")
        if isinstance(exc, _CutShort):
            return ModelUnavailable(f"{where}: the stream ended before it was complete")
        if isinstance(exc, _NotACompletion | json.JSONDecodeError | UnicodeDecodeError):
            return ModelError(f"{where}: the response is not a chat completion")
        return ModelError(f"{where}: bad response ({type(exc).__name__})")


class _StreamedCalls:
    """Tool calls assembled from streamed deltas: the first delta of a call carries its
    index, id and name, the next ones (same index, often no id) pieces of the arguments."""

    def __init__(self) -> None:
        self.parts: dict[int, dict[str, str]] = {}

    def add(self, deltas: Any) -> None:
        """Take one chunk's `delta.tool_calls`."""
        for position, delta in enumerate(deltas if isinstance(deltas, list) else ()):
            if not isinstance(delta, dict):
                continue
            index = delta.get("index")
            index = index if isinstance(index, int) else position
            call = self.parts.setdefault(index, {"id": "", "name": "", "arguments": ""})
            if isinstance(delta.get("id"), str) and delta["id"]:
                call["id"] = delta["id"]
            function = delta.get("function")
            if isinstance(function, dict):
                if isinstance(function.get("name"), str) and function["name"]:
                    call["name"] += function["name"] if not call["name"] else ""
                if isinstance(function.get("arguments"), str):
                    call["arguments"] += function["arguments"]

    def whole(self) -> list[ToolCall]:
        """The calls, in index order (an id made up when the server gave none)."""
        return [
            ToolCall(c["id"] or f"call_{i}", c["name"], c["arguments"] or "{}")
            for i, c in sorted(self.parts.items())
            if c["name"]
        ]


def _whole_calls(message: dict[str, Any]) -> list[ToolCall]:
    """The `tool_calls` of a non-streamed assistant message."""
    found = []
    for i, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            continue
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments if arguments is not None else {})
        found.append(ToolCall(str(call.get("id") or f"call_{i}"), function["name"], arguments))
    return found


def _backoff(attempt: int, headers: Any) -> float:
    """Seconds before retry `attempt + 1`: the server's Retry-After, else the SDK's backoff."""
    if headers is not None:
        for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
            value = headers.get(name)
            try:
                wait = float(value) * scale if value is not None else None
            except ValueError:
                wait = None
            if wait is not None and 0 <= wait <= MAX_RETRY_AFTER_S:
                return wait
    return backoff.delay(attempt, first=FIRST_BACKOFF_S, cap=MAX_BACKOFF_S, jitter=True)


def _error_body(raw: bytes) -> Any:
    """The provider's error object (`{"error": {...}}` unwrapped), or None."""
    try:
        found = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(found, dict) and isinstance(found.get("error"), dict):
        return found["error"]
    return found


def _completion(raw: bytes) -> dict[str, Any]:
    found = json.loads(raw)
    if not isinstance(found, dict) or not isinstance(found.get("choices"), list):
        raise _NotACompletion("no choices")
    return found


async def _events(response: Any) -> AsyncIterator[dict[str, Any]]:
    """The JSON documents of a Server-Sent Events body, until `data: [DONE]`."""
    buffer = b""
    async for raw in response.content:
        buffer += raw
        if not buffer.endswith(b"\n"):
            continue  # a line split across reads: wait for its end
        line, buffer = buffer.strip(), b""
        if not line.startswith(b"data:"):
            continue  # comments, event names, blank separators
        data = line[5:].strip()
        if data == b"[DONE]":
            return
        found = json.loads(data)
        if isinstance(found, dict) and isinstance(found.get("error"), dict):
            # An error inside a 200 stream (LiteLLM, vLLM): its own code when it gives one
            # (`"code": "500"`), else a server-side failure; outages are waited out.
            raise _Refused(_in_band_status(found["error"]), found["error"], None)
        if not isinstance(found, dict):
            raise _NotACompletion("a streamed chunk is not an object")
        yield found
    raise _CutShort("the stream ended before [DONE]")


def _in_band_status(error: dict[str, Any]) -> int:
    for name in ("code", "status", "status_code"):
        value = error.get(name)
        if isinstance(value, int) and 400 <= value <= 599:
            return value
        if isinstance(value, str) and value.isdigit() and 400 <= int(value) <= 599:
            return int(value)
    return 500


def _take_usage(reply: dict[str, Any], usage: CallUsage | None) -> None:
    counts = reply.get("usage")
    if usage is None or not isinstance(counts, dict):
        return
    prompt, completion = counts.get("prompt_tokens"), counts.get("completion_tokens")
    if isinstance(prompt, int) and isinstance(completion, int):
        usage.prompt_tokens, usage.completion_tokens = prompt, completion


def _connect_failure(exc: BaseException) -> str | None:
    """'connection refused' / 'unknown host NAME' when that is what the chain says."""
    import socket

    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, socket.gaierror):
            return "unknown host"
        name = type(seen).__name__
        if name == "ClientConnectorDNSError":
            return f"unknown host ({_first_line(seen)})"
        seen = seen.__cause__ or seen.__context__
    return None


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__


def _detail(body: object) -> str:
    """The provider's error message, short and on one line (never the raw body)."""
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, str) or not message:
        return ""
    flat = "".join(ch if ch.isprintable() else " " for ch in message)[:MAX_DETAIL_CHARS]
    # A provider (or a proxy in front of it) may echo URLs with credentials: mask them.
    return f": {_SECRETS_IN_TEXT.sub(lambda m: mask_url(m.group()), flat)}"
