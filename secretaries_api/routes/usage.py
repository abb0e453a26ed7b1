"""/api/usage and /api/users/{user_id}/limits: consumption and daily quotas."""

from __future__ import annotations

from fastapi import APIRouter, Query

from secretaries_api.routes.common import Svc, UserPath, user_ref
from secretaries_api.schemas import USER_PATTERN, LimitsIn, LimitsOut, UsageOut
from secretaries_core.catalog import admin
from secretaries_core.plumbing.durations import parse_duration

router = APIRouter(prefix="/api", tags=["usage"])


@router.get(
    "/usage", response_model=UsageOut, response_model_exclude_none=True, operation_id="usage"
)
def usage(
    svc: Svc,
    user: str | None = Query(None, pattern=USER_PATTERN, description="Telegram id or @name"),
    secretary: str | None = Query(None, min_length=1, max_length=100),
    since: str | None = Query(None, max_length=32, description="90m, 12h, 7d: whole UTC days"),
) -> UsageOut:
    """Messages and tokens in total, per secretary and per UTC day (same as `usage --json`)."""
    svc.orchestrator.flush_usage()  # this process's latest messages included
    report = admin.usage_report(
        svc.registry,
        user=user_ref(user) if user else None,
        secretary=secretary,
        since=parse_duration(since) if since is not None else None,
    )
    return UsageOut.model_validate(report.as_dict())


@router.put("/users/{user_id}/limits", response_model=LimitsOut, operation_id="set_limits")
def set_limits(svc: Svc, user_id: UserPath, body: LimitsIn) -> LimitsOut:
    """Set the user's own daily limits (they win over the secretary's and the global ones)."""
    ref = user_ref(user_id)
    limits = svc.registry.set_limits(ref, **body.model_dump(exclude_unset=True))
    user = svc.registry.get_user(ref)
    return LimitsOut(
        telegram_id=user.telegram_id,
        messages_per_day=limits.messages_per_day,
        tokens_per_day=limits.tokens_per_day,
    )
