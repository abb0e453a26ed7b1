"""The outer gate of every request: token first, then a bounded body read in bounded time.

It runs before FastAPI parses anything, so an unauthenticated or oversized request costs
no parsing and no memory: a request to a protected path without the right bearer token
gets 401 before its body is read, and a valid token outside its scope 403 (the admin token
and scoped tokens: `Access`); a body over `SECRETARIES_API_MAX_BODY` gets 413 (from
Content-Length at once, or as soon as a chunked body passes the limit); a body that does
not arrive within `SECRETARIES_API_BODY_TIMEOUT` seconds gets 408.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from secretaries_api.errors import error_response
from secretaries_core.catalog.api_tokens import ApiTokens, allows

# /telegram/webhook checks Telegram's secret header itself (routes/telegram.py).
OPEN_PATHS = ("/healthz", "/metrics", "/docs", "/redoc", "/openapi.json", "/telegram/webhook")


class _TooLarge(Exception):
    pass


def bearer(scope: Scope) -> str:
    """The request's `Authorization: Bearer <token>` token (never the query), or ''."""
    header = b""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            header = value
            break
    scheme, _, given = header.decode("latin-1").partition(" ")
    return given.strip() if scheme.lower() == "bearer" else ""


def token_ok(scope: Scope, token: str) -> bool:
    """True when the request carries `Authorization: Bearer <token>` (never the query)."""
    return hmac.compare_digest(bearer(scope).encode(), token.encode())


class Access:
    """Who may call what: the admin token (`SECRETARIES_API_TOKEN`) and the scoped tokens
    of the database (`secretaries tokens`); see secretaries_core/catalog/api_tokens.py."""

    def __init__(
        self,
        admin_token: str | None,
        tokens: Callable[[], ApiTokens | None],
        *,
        metrics_closed: bool = False,
    ) -> None:
        self.admin_token = admin_token
        self.tokens = tokens
        self.metrics_closed = metrics_closed

    async def scope_of(self, scope: Scope) -> str | None:
        """The scope the request's token carries, or None for no valid token."""
        given = bearer(scope)
        if not given:
            return None
        if self.admin_token is not None and hmac.compare_digest(
            given.encode(), self.admin_token.encode()
        ):
            return "admin"
        tokens = self.tokens()
        if tokens is None:
            return None
        known, found = tokens.cached_scope(given)
        if not known:
            found = await asyncio.to_thread(tokens.scope_of, given)
        return found

    async def refusal(self, scope: Scope) -> Response | None:
        """401 (no valid token), 403 (a token outside its scope), or None to let it pass."""
        path: str = scope["path"]
        method: str = scope.get("method", "GET")
        if path.startswith(OPEN_PATHS) and not (self.metrics_closed and path == "/metrics"):
            scope["secretaries.auth"] = "open"
            return None
        found = await self.scope_of(scope)
        if found is None:
            response = error_response(401, "Unauthorized", "missing or bad bearer token")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        if not allows(found, "GET" if path == "/metrics" else method, path):
            return error_response(
                403, "Forbidden", f"a {found!r} token may not call {method} {path}"
            )
        scope["secretaries.auth"] = found
        return None


class RequestGuard:
    """401 before the body, 413 over the size limit, 408 for a body that trickles."""

    def __init__(
        self, app: ASGIApp, *, access: Access | None, max_body: int, body_timeout: float
    ) -> None:
        self.app = app
        self.access = access
        self.max_body = max_body
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.access is not None:
            refused = await self.access.refusal(scope)
            if refused is not None:
                await refused(scope, receive, send)
                return
        length = _content_length(scope)
        if length is not None and length > self.max_body:
            await self._too_large(scope, receive, send)
            return
        received = 0
        body_done = slow = False
        deadline = asyncio.get_running_loop().time() + self.body_timeout

        async def guarded_receive() -> Message:
            nonlocal received, body_done, slow
            if body_done:
                # The body is in: no deadline now (a streamed reply may take minutes).
                return await receive()
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                async with asyncio.timeout(max(remaining, 0.001)):
                    message = await receive()
            except TimeoutError:
                slow = True
                raise _SlowBody from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _TooLarge
                body_done = not message.get("more_body", False)
            return message

        async def guarded_send(message: Message) -> None:
            # FastAPI turns a failed body read into its own 400 ("error parsing the body");
            # a body that did not arrive in time is answered 408 here instead.
            if not slow:
                await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except _TooLarge:
            await self._too_large(scope, receive, send)
            return
        except _SlowBody:
            slow = True
        if slow:
            response = error_response(
                408, "RequestTimeout", f"the body did not arrive within {self.body_timeout:g}s"
            )
            response.headers["Connection"] = "close"
            await response(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413, "PayloadTooLarge", f"the body is larger than {self.max_body} bytes"
        )
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


class _SlowBody(Exception):
    pass


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
