"""POST /telegram/webhook: Telegram pushes updates here (docs/telegram.md, "Webhook").

Open to the network like /healthz (Telegram sends no bearer token): the secret header it
sends is what admits a request, checked before the body is read.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from secretaries_api.errors import error_response
from secretaries_api.routes.common import Svc
from secretaries_core.errors import InvalidInput

router = APIRouter(tags=["telegram"])


@router.post(
    "/telegram/webhook",
    operation_id="telegram_webhook",
    responses={
        401: {"description": "Missing or wrong X-Telegram-Bot-Api-Secret-Token"},
        404: {"description": "This server takes no webhook (token or secret unset)"},
        422: {"description": "Not a Telegram update"},
        503: {"description": "The queue is unreachable (Telegram retries)"},
    },
)
async def telegram_webhook(svc: Svc, request: Request) -> JSONResponse:
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
