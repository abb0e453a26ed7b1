"""The outer gate of every request: token first, then a bounded body read in bounded time.

It runs before FastAPI parses anything, so an unauthenticated or oversized request costs
no parsing and no memory: a request to a protected path without the right bearer token
gets 401 before its body is read; a body over `SECRETARIES_API_MAX_BODY` gets 413 (from
Content-Length at once, or as soon as a chunked body passes the limit); a body that does
not arrive within `SECRETARIES_API_BODY_TIMEOUT` seconds gets 408.
"""

from __future__ import annotations

import asyncio
import hmac

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from secretaries_api.errors import error_response

OPEN_PATHS = ("/healthz", "/metrics", "/docs", "/redoc", "/openapi.json")


class _TooLarge(Exception):
    pass


def token_ok(scope: Scope, token: str) -> bool:
    """True when the request carries `Authorization: Bearer <token>` (never the query)."""
    header = b""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            header = value
            break
    scheme, _, given = header.decode("latin-1").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token.encode())


class RequestGuard:
    """401 before the body, 413 over the size limit, 408 for a body that trickles."""

    def __init__(
        self, app: ASGIApp, *, token: str | None, max_body: int, body_timeout: float
    ) -> None:
        self.app = app
        self.token = token
        self.max_body = max_body
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        protected = not path.startswith(OPEN_PATHS)
        if protected and self.token is not None and not token_ok(scope, self.token):
            response = error_response(401, "Unauthorized", "missing or bad bearer token")
            response.headers["WWW-Authenticate"] = "Bearer"
            await response(scope, receive, send)
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
