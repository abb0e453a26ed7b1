"""POST /telegram/webhook: Telegram pushes updates here (docs/telegram.md, "Webhook").

Open to the network like /healthz (Telegram sends no bearer token): the secret header it
sends is what admits a request, checked before the body is read. It is the hottest path
of a busy bot, so `WebhookFastPath` answers it before FastAPI's routing (which tries every
route of the API in turn) and dependency machinery; the route below only documents it in
the OpenAPI document and serves the same function.
"""

from __future__ import annotations

import json
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from secretaries_api.errors import error_response, for_api_clients, status_for
from secretaries_api.routes.common import Svc
from secretaries_api.services import Services
from secretaries_core.errors import InvalidInput, SecretariesError, error_code

log = logging.getLogger(__name__)
router = APIRouter(tags=["telegram"])
PATH = "/telegram/webhook"


async def take(svc: Services, request: Request) -> Response:
    """Take one update: 200 (queued or handled, or a repeat), 401 without the secret."""
    ingress = svc.webhook()
    if not ingress.authentic(request.headers.get("x-telegram-bot-api-secret-token")):
        return error_response(401, "Unauthorized", "missing or wrong secret token header")
    try:
        payload = json.loads(await request.body())
    except ValueError:
        raise InvalidInput("the body is not JSON") from None
    taken = await ingress.take(payload)
    return JSONResponse({"ok": True, "duplicate": not taken})


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


class WebhookFastPath:
    """Answer POST /telegram/webhook before the router (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        svc: Services = scope["app"].state.services
        try:
            response = await take(svc, Request(scope, receive))
        except SecretariesError as exc:
            response = error_response(status_for(exc), error_code(exc), for_api_clients(str(exc)))
        except Exception as exc:
            log.error("unexpected error", exc_info=exc)
            response = error_response(500, "InternalError", "internal error; see the server log")
        await response(scope, receive, send)
