"""/api/contexts and /api/messages: conversation contexts and the orchestrator."""

from __future__ import annotations

from fastapi import APIRouter, Query

from secretaries_api.routes.common import Svc, UserPath, user_ref
from secretaries_api.schemas import MessageIn, PurgeIn
from secretaries_core import admin
from secretaries_core.durations import parse_duration
from secretaries_core.schemas import ContextStatsOut, PurgeOut, ReplyOut, UserContextsOut

router = APIRouter(prefix="/api", tags=["contexts"])


@router.get("/contexts/stats", response_model=ContextStatsOut, operation_id="context_stats")
def context_stats(svc: Svc) -> ContextStatsOut:
    """Contexts and messages, in total and per secretary name."""
    return admin.context_stats(svc.registry, svc.contexts)


@router.get(
    "/users/{user_id}/contexts", response_model=UserContextsOut, operation_id="user_contexts"
)
def user_contexts(
    svc: Svc, user_id: UserPath, secretary: str | None = Query(None, max_length=100)
) -> UserContextsOut:
    """The user's stored messages, per secretary (one secretary with `secretary`)."""
    return admin.user_contexts(svc.registry, svc.contexts, user_ref(user_id), secretary)


@router.post("/contexts/purge", response_model=PurgeOut, operation_id="purge_contexts")
def purge_contexts(svc: Svc, body: PurgeIn) -> PurgeOut:
    """Delete idle contexts, or all of one user's / one secretary's (dry run: count only)."""
    return admin.purge_contexts(
        svc.registry,
        svc.contexts,
        older_than=parse_duration(body.older_than) if body.older_than is not None else None,
        user=user_ref(body.user) if body.user else None,
        secretary=body.secretary,
        dry_run=body.dry_run,
    )


@router.post("/messages", response_model=ReplyOut, operation_id="handle_message")
def handle_message(svc: Svc, body: MessageIn) -> ReplyOut:
    """Handle a message as the bot would: resolve, ask the model, keep the context."""
    reply = svc.orchestrator.handle(body.user_id, body.text, username=body.username)
    return ReplyOut(reply=reply.text, secretary=reply.secretary, source=reply.source)
