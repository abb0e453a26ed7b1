"""OpenAI-compatible chat completions through the official `openai` SDK (async client).

One `AsyncOpenAI` per event loop (its connection pool belongs to that loop) is shared by
every secretary of an orchestrator. The SDK's own retries (429, 5xx, connection errors,
with its backoff and `Retry-After`) and per-request timeout apply inside the call; the
orchestrator's deadline bounds the whole of it. SDK errors are mapped onto ours here and
nowhere else.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from secretaries_core.errors import ModelError, ModelUnavailable
from secretaries_core.llm.base import CallUsage, ChatRequest
from secretaries_core.plumbing.db import mask_url
from secretaries_core.plumbing.loops import PerLoop

if TYPE_CHECKING:
    from openai import AsyncOpenAI

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
    }
)
# Phrases providers use when the prompt does not fit the model's window.
_TOO_LONG_HINTS = ("context_length_exceeded", "context length", "too long", "maximum context")
NO_KEY = "unused"  # local servers need none; the SDK refuses an empty one
MAX_DETAIL_CHARS = 160
_SECRETS_IN_TEXT = re.compile(r"[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)


class ContextTooLong(ModelError):
    """The provider refused the request because the prompt does not fit the model."""


class OpenAIClients:
    """The SDK clients of one orchestrator, one per event loop, made on first use."""

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
        self.api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_connections = max_connections
        self._clients: PerLoop[AsyncOpenAI] = PerLoop(self._make)

    def _make(self) -> AsyncOpenAI:
        import openai

        try:
            import httpx2 as http  # the SDK's HTTP layer from openai 3 on
        except ImportError:  # pragma: no cover  (older SDKs are built on httpx)
            import httpx as http  # type: ignore[no-redef]

        limits = http.Limits(
            max_connections=self.max_connections,
            max_keepalive_connections=self.max_connections,
        )
        try:
            # aiohttp's transport costs about a third less CPU per call than httpx's.
            http_client = openai.DefaultAioHttpClient(limits=limits, timeout=self.timeout)
        except RuntimeError:
            http_client = openai.DefaultAsyncHttpxClient(limits=limits, timeout=self.timeout)
        return openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=self.api_key or NO_KEY,
            timeout=self.timeout,
            max_retries=self.max_retries,
            http_client=http_client,
        )

    def get(self) -> AsyncOpenAI:
        """The running loop's client."""
        return self._clients.get()

    async def aclose(self) -> None:
        """Close the running loop's client."""
        await self._clients.aclose_current(lambda client: client.close())

    def close(self) -> None:
        """Close every loop's client (from outside any loop)."""
        self._clients.close_all(lambda client: client.close())


class OpenAIAdapter:
    """One model on an OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp, ...)."""

    def __init__(self, model: str, clients: OpenAIClients) -> None:
        self.model = model
        self.clients = clients

    def _body(self, request: ChatRequest) -> dict[str, Any]:
        extra = {k: v for k, v in request.params.items() if k not in LOCAL_PARAMS}
        # The JSON body as sent: the server is the judge of the params. It goes through the
        # SDK's lower-level `post`, which skips `chat.completions.create`'s walk of every
        # message against its TypedDicts — 38 ms of CPU per call at 100 messages, 2 ms
        # this way (docs/performance.md); auth, retries, errors and parsing stay the SDK's.
        return {**extra, "model": self.model, "messages": request.messages()}

    async def pieces(
        self, request: ChatRequest, *, stream: bool, usage: CallUsage | None = None
    ) -> AsyncIterator[str]:
        """Ask the server; stream with SSE when `stream`, else one JSON reply."""
        from openai import AsyncStream
        from openai._base_client import make_request_options
        from openai.types.chat import ChatCompletion, ChatCompletionChunk

        client = self.clients.get()
        body = self._body(request)
        options = make_request_options(security={"bearer_auth": True})
        produced = False
        try:
            if not stream:
                completion = await client.post(
                    "/chat/completions", body=body, cast_to=ChatCompletion, options=options
                )
                _take_usage(completion, usage)
                choices = completion.choices
                content = choices[0].message.content if choices else None
                if not isinstance(content, str) or not content:
                    raise ModelError(f"{self.model}: the reply has no text")
                yield content
                return
            response = await client.post(
                "/chat/completions",
                body={**body, "stream": True, "stream_options": {"include_usage": True}},
                cast_to=ChatCompletion,
                options=options,
                stream=True,
                stream_cls=AsyncStream[ChatCompletionChunk],
            )
            async with response:
                async for chunk in response:
                    # With include_usage the last chunk carries the counts and no choices.
                    _take_usage(chunk, usage)
                    for choice in chunk.choices:
                        if choice.delta is not None and choice.delta.content:
                            produced = True
                            yield choice.delta.content
            if not produced:
                raise ModelError(f"{self.model}: the reply has no text")
        except ModelError:
            raise
        except Exception as exc:
            raise self._translate(exc) from exc

    def _translate(self, exc: Exception) -> ModelError:
        import openai

        where = f"{self.model} at {self.clients.masked_url}"
        refused = _connect_failure(exc)
        if refused is not None:
            # The SDK's aiohttp transport reports refused connections and unknown hosts as
            # connect *timeouts*; say what really happened.
            return ModelUnavailable(f"{where}: cannot connect ({refused})")
        if isinstance(exc, openai.APITimeoutError):
            return ModelUnavailable(f"{where}: no reply within {self.clients.timeout:g}s")
        if isinstance(exc, openai.APIConnectionError):
            return ModelUnavailable(f"{where}: unreachable ({_cause(exc)})")
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            detail = _detail(exc.body)
            if status == 429 or status >= 500:
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
        if isinstance(exc, json.JSONDecodeError | openai.APIResponseValidationError):
            return ModelError(f"{where}: the response is not a chat completion")
        return ModelError(f"{where}: bad response ({type(exc).__name__})")


def _take_usage(reply: Any, usage: CallUsage | None) -> None:
    counts = getattr(reply, "usage", None)
    if usage is None or counts is None:
        return
    prompt, completion = (
        getattr(counts, "prompt_tokens", None),
        getattr(counts, "completion_tokens", None),
    )
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


def _cause(exc: BaseException) -> str:
    inner = exc.__cause__ or exc.__context__
    return type(inner).__name__ if inner is not None else "connection error"


def _detail(body: object) -> str:
    """The provider's error message, short and on one line (never the raw body)."""
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, str) or not message:
        return ""
    flat = "".join(ch if ch.isprintable() else " " for ch in message)[:MAX_DETAIL_CHARS]
    # A provider (or a proxy in front of it) may echo URLs with credentials: mask them.
    return f": {_SECRETS_IN_TEXT.sub(lambda m: mask_url(m.group()), flat)}"
