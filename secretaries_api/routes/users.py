"""/api/users: registration, resolution, assignment, history, migration."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import Engine

from secretaries_api.routes.common import SecretaryPath, Svc, UserPath, user_ref
from secretaries_api.schemas import MigrateIn, RegisteredOut, UserIn
from secretaries_core.catalog import admin, reads
from secretaries_core.catalog.refs import UserRef
from secretaries_core.catalog.schemas import (
    AssignOut,
    CurrentOut,
    ErasedOut,
    LinkOut,
    MigrationOut,
    UserListItem,
    UserOut,
)
from secretaries_core.plumbing.db import connected

router = APIRouter(prefix="/api", tags=["users"])


@router.post(
    "/users/",
    response_model=RegisteredOut,
    operation_id="register_user",
    responses={201: {"model": RegisteredOut, "description": "Created"}},
)
def register_user(svc: Svc, body: UserIn, response: Response) -> RegisteredOut:
    """Register a user (idempotent): 201 when created, 200 when it already existed.

    The document is the CLI's `users add --json`: `username_moved_from` names the user a
    username was taken from (they changed it on Telegram), else null.
    """
    found = svc.registry.register_user(body.telegram_id, body.username)
    if found.status == "created":
        response.status_code = status.HTTP_201_CREATED
    return RegisteredOut(
        telegram_id=found.user.telegram_id,
        username=found.user.username,
        status=found.status,
        username_moved_from=found.username_moved_from,
    )


@router.get("/users/", response_model=list[UserListItem], operation_id="list_users")
def list_users(
    svc: Svc, secretary: str | None = Query(None, max_length=100, description="Only users on it")
) -> list[UserListItem]:
    """Users with the secretary of their active link."""
    return svc.registry.list_users(secretary=secretary)


@router.get("/users/{user_id}/secretary", response_model=CurrentOut, operation_id="current")
async def current(svc: Svc, user_id: UserPath) -> Any:
    """The user's resolved secretary and its source (assigned, default, fallback)."""
    ref = user_ref(user_id)
    engine = svc.registry.engine
    # The hot read on Core, answered as its JSON document (no ORM, no model rebuilt from
    # it); on the loop for a SQLite file (see Services.reads_on_loop), else on a thread.
    if svc.reads_on_loop:
        document = _quick_current(engine, ref)
    else:
        document = await run_in_threadpool(_quick_current, engine, ref)
    if document is not None:
        return JSONResponse(document)
    # What the quick read cannot answer is the registry's, its errors included.
    found, secretary, served = await run_in_threadpool(svc.registry.current_version, ref)
    return CurrentOut(
        user=UserOut.of(found.user),
        secretary=secretary,
        source=found.source,
        version=served.version,
        version_source=served.source,
    )


def _quick_current(engine: Engine, ref: UserRef) -> dict[str, Any] | None:
    try:
        with connected(engine) as conn:
            return reads.current(conn, ref).document
    except reads.Miss:
        return None


@router.post(
    "/users/{user_id}/secretary/{secretary_id}", response_model=AssignOut, operation_id="assign"
)
def assign(svc: Svc, user_id: UserPath, secretary_id: SecretaryPath) -> AssignOut:
    """Switch the user to this secretary (no change if it already is theirs)."""
    # The orchestrator hears of the change through the registry's subscription.
    return svc.registry.assign(user_ref(user_id), secretary_id)


@router.delete("/users/{user_id}", response_model=ErasedOut, operation_id="erase_user")
def erase_user(svc: Svc, user_id: UserPath) -> ErasedOut:
    """Erase the user everywhere: user row, link history, contexts and usage."""
    from secretaries_core.queue.client import Queue

    svc.orchestrator.flush_usage()  # usage still buffered here must not outlive the user
    queue = svc.queue() if Queue.if_configured(svc.settings) is not None else None
    erased = admin.erase_user(svc.registry, svc.contexts, user_ref(user_id), queue)
    svc.orchestrator.metrics.erased_unanswered.inc(erased.queued_dropped)
    return ErasedOut.model_validate(erased.doc())


@router.get("/users/{user_id}/history", response_model=list[LinkOut], operation_id="history")
def history(svc: Svc, user_id: UserPath) -> list[LinkOut]:
    """The user's links, newest first."""
    return svc.registry.history(user_ref(user_id))


@router.post("/migrate-users", response_model=MigrationOut, operation_id="migrate_users")
def migrate_users(svc: Svc, body: MigrateIn) -> MigrationOut:
    """Give users without an active link (or, with `from`, on that secretary) a link to `to`."""
    return svc.registry.migrate_users(
        to=body.to, from_=body.from_, dry_run=body.dry_run, batch_size=body.batch_size
    )
