"""POST /telegram/webhook: Telegram pushes updates here (docs/telegram.md, "Webhook").

Open to the network like /healthz (Telegram sends no bearer token): the secret header it
sends is what admits a request, checked before the body is read. It is the hottest path
of a busy bot, so `WebhookFront` answers it before every other layer of the app — the error
middleware, the request guard, FastAPI's routing (which tries every route of the API in
turn) and its dependency machinery; the route below only documents it in the OpenAPI
document and serves the same function.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from secretaries_api.errors import error_response, for_api_clients, status_for
from secretaries_api.routes.common import Svc
from secretaries_api.services import Services
from secretaries_core.errors import InvalidInput, SecretariesError, error_code

if TYPE_CHECKING:  # the `telegram` extra: imported when a webhook is first taken
    from secretaries_telegram.webhook import WebhookIngress

log = logging.getLogger(__name__)
router = APIRouter(tags=["telegram"])
PATH = "/telegram/webhook"


async def take(svc: Services, request: Request) -> Response:
    """Take one update: 200 (queued or handled, or a repeat), 401 without the secret."""
    ingress = svc.webhook()
    if not ingress.authentic(request.headers.get("x-telegram-bot-api-secret-token")):
        return error_response(*_UNAUTHORIZED)
    status, body = await _answer(ingress, await request.body())
    return Response(body, status, media_type="application/json")


async def _answer(ingress: WebhookIngress, body: bytes) -> tuple[int, bytes]:
    """Hand a body from an authentic sender to the ingress: 200, `duplicate` saying
    whether it was a repeat; `InvalidInput` for a body that is not JSON."""
    try:
        payload = json.loads(body)
    except ValueError:
        raise InvalidInput("the body is not JSON") from None
    return 200, _TAKEN if await ingress.take(payload) else _REPEATED


@router.post(
    PATH,
    operation_id="telegram_webhook",
    responses={
        401: {"description": "Missing or wrong X-Telegram-Bot-Api-Secret-Token"},
        404: {"description": "This server takes no webhook (token or secret unset)"},
        422: {"description": "Not a Telegram update"},
        503: {"description": "The queue is unreachable (Telegram retries)"},
    },
)
async def telegram_webhook(svc: Svc, request: Request) -> Response:
    """Take one update: 200 (queued or handled, or a repeat), 401 without the secret."""
    return await take(svc, request)


class WebhookFront:
    """The app's outermost layer: answers POST /telegram/webhook itself (see the module
    docstring), with the request guard's limits applied here — the body is read only after
    the secret header matched, at most `max_body` bytes (413), within `body_timeout`
    seconds (408) — and hands every other request to `app` untouched.

    Outside Starlette's error middleware and the API's guard on purpose: each layer cost
    an ASGI hop per update, and this path needs none of what they add (it has no token,
    no query and no route to match, and catches its own errors)."""

    def __init__(self, app: ASGIApp, *, max_body: int, body_timeout: float) -> None:
        self.app = app
        self.max_body = max_body
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            status, body = await self._take(scope, receive)
        except SecretariesError as exc:
            status, body = _error(status_for(exc), error_code(exc), for_api_clients(exc))
        except Exception as exc:
            log.error("unexpected error", exc_info=exc)
            status, body = _error(500, "InternalError", "internal error; see the server log")
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        if status in (408, 413):
            headers.append((b"connection", b"close"))  # the rest of the body is not read
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _take(self, scope: Scope, receive: Receive) -> tuple[int, bytes]:
        svc: Services = scope["app"].state.services
        ingress = svc.webhook()
        secret = length = None
        for name, value in scope["headers"]:
            if name == b"x-telegram-bot-api-secret-token":
                secret = value.decode("latin-1")
            elif name == b"content-length":
                length = int(value) if value.isdigit() else None
        if not ingress.authentic(secret):
            return _error(*_UNAUTHORIZED)
        if length is not None and length > self.max_body:
            return self._too_large()
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        return _error(400, "InvalidInput", "the client went away")
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_body:
                        return self._too_large()
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            return _error(
                408, "RequestTimeout", f"the body did not arrive within {self.body_timeout:g}s"
            )
        return await _answer(ingress, b"".join(chunks))

    def _too_large(self) -> tuple[int, bytes]:
        return _error(413, "PayloadTooLarge", f"the body is larger than {self.max_body} bytes")


_UNAUTHORIZED = (401, "Unauthorized", "missing or wrong secret token header")
_TAKEN = b'{"ok":true,"duplicate":false}'
_REPEATED = b'{"ok":true,"duplicate":true}'


def _error(status: int, code: str, message: str) -> tuple[int, bytes]:
    """The API's one error shape (`errors.error_response`), as status and body."""
    return status, bytes(error_response(status, code, message).body)
