"""An HTTP function: `POST URL` with the JSON arguments, once per call id.

Headers: `Idempotency-Key: <call id>` (the server can tell a call sent again from a new
one), and with `--secret-env VAR`: `X-Secretaries-Signature: sha256=<hex>`, the
HMAC-SHA256 of the exact body with $VAR as key, so the server can check the call is ours.
The response body is the result (JSON or text); a non-2xx status is a tool error, and a
redirect is one too: a signed call is never sent on to another address.

Two transports carry the same request. Long-running processes use aiohttp. The CLI's
one-shot `tools call` uses the standard library's `http.client` in a thread: importing
aiohttp costs about as much CPU as SQLAlchemy, which would put that command over its
start-up budget (docs/performance.md), and one call needs no connection pool.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from secretaries_core.tools.errors import ToolError
from secretaries_core.tools.spec import ToolSpec

SIGNATURE_HEADER = "X-Secretaries-Signature"
# Read at most this much of a response: a result is cut far below it anyway.
MAX_READ_BYTES = 16 * 1024 * 1024


def signature(body: bytes, key: str) -> str:
    """The `X-Secretaries-Signature` value of `body` signed with `key`."""
    return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def env_headers(names: Mapping[str, str], env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Header values from their environment variables; `ToolError` names a missing one."""
    source = os.environ if env is None else env
    found = {}
    for header, var in names.items():
        value = source.get(var)
        if not value:
            raise ToolError(f"the environment variable {var} (header {header}) is not set")
        found[header] = value
    return found


Post = Callable[[str, bytes, dict[str, str], float], Awaitable[tuple[int, bytes]]]
"""A transport: POST body with headers to a URL within a timeout; (status, body read)."""


async def aiohttp_post(
    url: str, body: bytes, headers: dict[str, str], timeout: float
) -> tuple[int, bytes]:
    """The transport of long-running processes."""
    import aiohttp

    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=body, headers=headers, allow_redirects=False) as response,
        ):
            return response.status, await response.content.read(MAX_READ_BYTES)
    except aiohttp.ClientError as exc:
        raise ToolError(f"unreachable ({type(exc).__name__})") from None


async def stdlib_post(
    url: str, body: bytes, headers: dict[str, str], timeout: float
) -> tuple[int, bytes]:
    """The one-shot CLI's transport: `http.client` in a thread, each socket operation
    bounded by the tool's timeout (so the thread ends soon after the call is given up)."""
    import asyncio

    return await asyncio.to_thread(_blocking_post, url, body, headers, timeout)


def _blocking_post(
    url: str, body: bytes, headers: dict[str, str], timeout: float
) -> tuple[int, bytes]:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection: http.client.HTTPConnection
    try:
        if parts.scheme == "https":
            import ssl

            connection = http.client.HTTPSConnection(
                parts.hostname or "",
                parts.port,
                timeout=timeout,
                context=ssl.create_default_context(),
            )
        else:
            connection = http.client.HTTPConnection(
                parts.hostname or "", parts.port, timeout=timeout
            )
        try:
            connection.request("POST", target, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read(MAX_READ_BYTES)
        finally:
            connection.close()
    except TimeoutError:
        raise  # the caller's timeout reports it
    except (OSError, http.client.HTTPException) as exc:
        raise ToolError(f"unreachable ({type(exc).__name__})") from None


async def call_http(
    spec: ToolSpec, arguments: dict[str, Any], call_id: str, post: Post = aiohttp_post
) -> str:
    """POST the arguments to the tool's URL; the response body as text."""
    body = json.dumps(arguments, ensure_ascii=False, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "Idempotency-Key": call_id}
    headers |= env_headers(spec.headers)
    if spec.secret_env:
        key = os.environ.get(spec.secret_env)
        if not key:
            raise ToolError(f"the environment variable {spec.secret_env} (--secret-env) is not set")
        headers[SIGNATURE_HEADER] = signature(body, key)
    assert spec.url is not None
    status, raw = await post(spec.url, body, headers, spec.timeout)
    text = raw.decode("utf-8", "replace")
    if not 200 <= status < 300:
        first = text.strip().splitlines()[0][:200] if text.strip() else ""
        raise ToolError(f"HTTP {status}" + (f": {first}" if first else ""))
    return text
