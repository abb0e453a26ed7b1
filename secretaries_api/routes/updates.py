"""/api/updates: the ingress of the workers' queue (Redis Streams)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from secretaries_api.routes.common import Svc
from secretaries_api.schemas import QueuedOut, UpdateIn
from secretaries_core.conversation.text import check_incoming
from secretaries_core.queue import Update

router = APIRouter(prefix="/api", tags=["queue"])


@router.post(
    "/updates",
    response_model=QueuedOut,
    status_code=202,
    operation_id="queue_update",
    responses={200: {"model": QueuedOut, "description": "A duplicate update_id"}},
)
async def queue_update(svc: Svc, body: UpdateIn) -> JSONResponse:
    """Queue a message for the workers: 202 queued, 200 `duplicate` for a repeated id."""
    check_incoming(
        body.telegram_id, body.text, body.username, max_chars=svc.settings.max_message_chars
    )
    update = Update(body.update_id, body.telegram_id, body.text, body.username, body.chat_id)
    queued = await svc.queue().aenqueue(update)
    if queued:
        return JSONResponse({"queued": True}, status_code=202)
    return JSONResponse(QueuedOut(queued=False, duplicate=True).model_dump(), status_code=200)
