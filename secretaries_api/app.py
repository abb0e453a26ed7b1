"""`create_app`: the FastAPI application, its auth, error handlers and routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import unquote_to_bytes

from fastapi import Depends, FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from secretaries_api import errors, openapi_doc
from secretaries_api.auth import require_token
from secretaries_api.guard import Access, RequestGuard
from secretaries_api.routes import (
    catalog,
    contexts,
    ops,
    telegram,
    tools,
    updates,
    usage,
    users,
    versions,
)
from secretaries_api.services import Services
from secretaries_core.catalog.api_tokens import ApiTokens
from secretaries_core.config import Settings


class RejectControlCharacters:
    """404 for paths with control characters; 422 for query strings no store can hold.

    Starlette matches routes with `re.match(...$)`, and `$` also matches before a final
    newline, so `/api/secretaries/%0A` would otherwise be served by the list route. A NUL
    or bytes that are not UTF-8 in a query parameter (`?secretary=%00`) would reach SQL,
    where PostgreSQL refuses them with an error that is not the caller's fault.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and any(ord(c) < 0x20 or c == "\x7f" for c in scope["path"]):
            response = errors.error_response(404, "NotFound", "Not Found")
            await response(scope, receive, send)
            return
        if scope["type"] == "http" and scope.get("query_string"):
            problem = _query_problem(scope["query_string"])
            if problem is not None:
                response = errors.error_response(422, "InvalidInput", problem)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _query_problem(raw: bytes) -> str | None:
    """Why a query string cannot be taken (a NUL, not UTF-8, a lone surrogate), or None."""
    for pair in raw.split(b"&"):
        name, _, value = pair.partition(b"=")
        for part in (name, value):
            try:
                text = unquote_to_bytes(part.replace(b"+", b" ")).decode("utf-8")
            except UnicodeDecodeError:
                return f"query parameter {name[:40]!r} is not UTF-8 text"
            if "\x00" in text:
                return f"query parameter {name[:40].decode('latin-1')!r} contains a NUL"
    return None


class SecretariesAPI(FastAPI):
    """FastAPI with the webhook's front door outside every middleware (routes/telegram.py)."""

    webhook_limits: tuple[int, float] = (1 << 20, 10.0)

    def build_middleware_stack(self) -> ASGIApp:
        """Starlette's stack (error middleware outermost), behind `WebhookFront`."""
        max_body, body_timeout = self.webhook_limits
        return telegram.WebhookFront(
            super().build_middleware_stack(), max_body=max_body, body_timeout=body_timeout
        )


def create_app(
    services: Services | None = None,
    *,
    settings: Settings | None = None,
    api_token: str | None,
    auth: bool | None = None,
) -> FastAPI:
    """Build the app on `services` (or open them from `settings` at startup).

    `api_token` is the admin token; the database's scoped tokens (`secretaries tokens`)
    are accepted too. Auth is on when `auth` says so (default: when `api_token` is
    given); only `secretaries serve --no-auth` on loopback switches it off.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        opened = None
        if app.state.services is None:
            opened = Services.from_settings(settings or Settings.load())
            app.state.services = opened
        app.state.services.warm_webhook()
        try:
            yield
        finally:
            if opened is not None:
                await opened.aclose()

    app = SecretariesAPI(
        title="secretaries",
        version="0.1.0",
        description="Per-user AI secretaries: catalog, assignment, contexts and messages.",
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.api_token = api_token
    limits = settings or (services.settings if services is not None else Settings.load())

    def tokens() -> ApiTokens | None:
        svc = app.state.services
        return svc.tokens if svc is not None else None

    access = (
        Access(api_token, tokens, metrics_closed=limits.metrics_token_required)
        if (api_token is not None if auth is None else auth)
        else None
    )
    app.state.access = access
    errors.install(app)
    app.webhook_limits = (limits.api_max_body, limits.api_body_timeout_seconds)
    app.add_middleware(RejectControlCharacters)
    # Outermost: nothing is parsed for a request without the token or over the limits.
    app.add_middleware(
        RequestGuard,
        access=access,
        max_body=limits.api_max_body,
        body_timeout=limits.api_body_timeout_seconds,
    )
    protected = [Depends(require_token)]
    app.include_router(catalog.router, dependencies=protected)
    app.include_router(users.router, dependencies=protected)
    app.include_router(contexts.router, dependencies=protected)
    app.include_router(usage.router, dependencies=protected)
    app.include_router(updates.router, dependencies=protected)
    app.include_router(versions.router, dependencies=protected)
    app.include_router(tools.router, dependencies=protected)
    app.include_router(ops.router)
    app.include_router(telegram.router)  # admitted by Telegram's secret header, not a token
    openapi_doc.install(app)
    return app
