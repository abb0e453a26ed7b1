"""/api/contexts and /api/messages: conversation contexts and the orchestrator."""

from __future__ import annotations

from fastapi import APIRouter, Query

from secretaries_api.routes.common import Svc, UserPath, user_ref
from secretaries_api.schemas import MessageIn, PurgeIn, ReplyOut
from secretaries_core.durations import parse_duration
from secretaries_core.schemas import (
    ContextOut,
    ContextStatsOut,
    CountsOut,
    MessageOut,
    PurgeOut,
    UserContextsOut,
    UserOut,
)

router = APIRouter(prefix="/api", tags=["contexts"])


@router.get("/contexts/stats", response_model=ContextStatsOut, operation_id="context_stats")
def context_stats(svc: Svc) -> ContextStatsOut:
    """Contexts and messages, in total and per secretary name."""
    found = svc.contexts.stats()
    names = {s.id: s.name for s in svc.registry.list_secretaries(include_inactive=True)}
    return ContextStatsOut(
        contexts=found.contexts,
        messages=found.messages,
        by_secretary={
            names.get(sid, str(sid)): CountsOut(contexts=c, messages=m)
            for sid, (c, m) in found.by_secretary.items()
        },
    )


@router.get(
    "/users/{user_id}/contexts", response_model=UserContextsOut, operation_id="user_contexts"
)
def user_contexts(
    svc: Svc, user_id: UserPath, secretary: str | None = Query(None, max_length=100)
) -> UserContextsOut:
    """The user's stored messages, per secretary (one secretary with `secretary`)."""
    person = svc.registry.get_user(user_ref(user_id))
    sec_id = svc.registry.get_secretary(secretary).id if secretary else None
    names = {s.id: s.name for s in svc.registry.list_secretaries(include_inactive=True)}
    contexts = [
        ContextOut(
            secretary_id=summary.secretary_id,
            secretary=names.get(summary.secretary_id, str(summary.secretary_id)),
            last_activity=summary.last_activity,
            messages=[
                MessageOut(
                    role=m.role,
                    content=m.content,
                    at=m.at,
                    metadata=dict(m.metadata) if m.metadata else None,
                )
                for m in svc.contexts.read(person.telegram_id, summary.secretary_id)
            ],
        )
        for summary in svc.contexts.iter_contexts(user_id=person.telegram_id, secretary_id=sec_id)
    ]
    return UserContextsOut(user=UserOut.of(person), contexts=contexts)


@router.post("/contexts/purge", response_model=PurgeOut, operation_id="purge_contexts")
def purge_contexts(svc: Svc, body: PurgeIn) -> PurgeOut:
    """Delete idle contexts, or all of one user's / one secretary's (dry run: count only)."""
    older = parse_duration(body.older_than) if body.older_than is not None else None
    user_id = svc.registry.get_user(user_ref(body.user)).telegram_id if body.user else None
    sec_id = svc.registry.get_secretary(body.secretary).id if body.secretary else None
    purged = svc.contexts.purge(
        older_than=older, user_id=user_id, secretary_id=sec_id, dry_run=body.dry_run
    )
    return PurgeOut(purged=purged, dry_run=body.dry_run)


@router.post("/messages", response_model=ReplyOut, operation_id="handle_message")
def handle_message(svc: Svc, body: MessageIn) -> ReplyOut:
    """Handle a message as the bot would: resolve, ask the model, keep the context."""
    reply = svc.orchestrator.handle(body.user_id, body.text, username=body.username)
    return ReplyOut(reply=reply.text, secretary=reply.secretary, source=reply.source)
