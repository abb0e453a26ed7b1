"""Health and metrics, open without a token so probes and Prometheus can reach them."""

from __future__ import annotations

import logging
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from secretaries_api.routes.common import Svc
from secretaries_api.schemas import HealthOut
from secretaries_core.errors import SecretariesError
from secretaries_core.plumbing.db import check_reachable

log = logging.getLogger(__name__)

router = APIRouter(tags=["operations"])
PROBE_SECRETARY = uuid.UUID(int=0)


@router.get(
    "/healthz",
    response_model=HealthOut,
    operation_id="health",
    responses={503: {"model": HealthOut, "description": "A backend is down"}},
)
async def health(svc: Svc, request: Request) -> JSONResponse:
    """`ok` or `unavailable` for the database and the context store; 503 if either fails.

    The store is probed through the same async client the message path uses. The errors
    themselves (which name hosts, ports, users and databases) are shown only to a caller
    with the API token: the probe is open to anyone who can reach the port.
    """
    access = request.app.state.access
    detailed = access is None or await access.scope_of(request.scope) in ("admin", "read")
    checks = {}
    for name, probe in (
        ("database", lambda: run_in_threadpool(check_reachable, svc.registry.engine)),
        # Reading a pair that never exists costs one round trip and touches no data.
        ("contexts", lambda: svc.contexts.aread(0, PROBE_SECRETARY)),
    ):
        try:
            await probe()
            checks[name] = "ok"
        except SecretariesError as exc:
            checks[name] = str(exc) if detailed else "unavailable"
    healthy = all(v == "ok" for v in checks.values())
    return JSONResponse(checks, status_code=200 if healthy else 503)


@router.get(
    "/metrics",
    operation_id="metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus"}},
)
def metrics(svc: Svc) -> Response:
    """Prometheus exposition of the orchestrator's metrics (and the queue's, when set)."""
    if svc.settings.queue_url:
        try:
            svc.orchestrator.metrics.observe_queue(svc.queue().recent_stats())
        except SecretariesError as exc:  # the scrape still shows everything else
            log.warning("queue metrics unavailable: %s", exc)
    return Response(svc.orchestrator.metrics_text(), media_type=CONTENT_TYPE_LATEST)
