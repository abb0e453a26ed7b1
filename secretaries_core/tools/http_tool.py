"""An HTTP function: `POST URL` with the JSON arguments, once per call id.

Headers: `Idempotency-Key: <call id>` (the server can tell a call sent again from a new
one), and with `--secret-env VAR`: `X-Secretaries-Signature: sha256=<hex>`, the
HMAC-SHA256 of the exact body with $VAR as key, so the server can check the call is ours.
The response body is the result (JSON or text); a non-2xx status is a tool error.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Mapping
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


async def call_http(spec: ToolSpec, arguments: dict[str, Any], call_id: str) -> str:
    """POST the arguments to the tool's URL; the response body as text."""
    import aiohttp

    body = json.dumps(arguments, ensure_ascii=False, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "Idempotency-Key": call_id}
    headers |= env_headers(spec.headers)
    if spec.secret_env:
        key = os.environ.get(spec.secret_env)
        if not key:
            raise ToolError(f"the environment variable {spec.secret_env} (--secret-env) is not set")
        headers[SIGNATURE_HEADER] = signature(body, key)
    assert spec.url is not None
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(spec.url, data=body, headers=headers) as response,
        ):
            raw = await response.content.read(MAX_READ_BYTES)
            text = raw.decode("utf-8", "replace")
            if not 200 <= response.status < 300:
                first = text.strip().splitlines()[0][:200] if text.strip() else ""
                raise ToolError(f"HTTP {response.status}" + (f": {first}" if first else ""))
            return text
    except aiohttp.ClientError as exc:
        raise ToolError(f"unreachable ({type(exc).__name__})") from None
