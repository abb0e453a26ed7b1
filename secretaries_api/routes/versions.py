"""Versions, rollouts and feedback: what release tooling and dashboards need."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field, model_validator

from secretaries_api.routes.common import SecretaryPath, Svc

router = APIRouter(tags=["versions"])


class RolloutIn(BaseModel):
    """`rollout start`'s options."""

    percent: int = Field(ge=0, le=100)
    version: int | None = None
    max_error_rate: float | None = Field(default=None, ge=0, le=1)
    max_dislike_rate: float | None = Field(default=None, ge=0, le=1)
    min_messages: int = Field(default=50, ge=1)
    require_eval: bool = False
    judge: str | None = Field(default=None, description="Judge the candidate's replies")
    judge_sample: float = Field(default=100.0, gt=0, le=100)
    max_judge_fail_rate: float | None = Field(default=None, ge=0, le=1)
    judge_model: str | None = None


class PercentIn(BaseModel):
    """`rollout set`'s option."""

    percent: int = Field(ge=0, le=100)


class FeedbackIn(BaseModel):
    """A like (1) or dislike (-1) of a reply, found by its update or its message id."""

    telegram_id: int = Field(gt=0, le=2**63 - 1)
    update_id: int | None = Field(default=None, ge=0)
    message_id: int | None = Field(default=None, ge=0)
    value: int

    @model_validator(mode="after")
    def _one_reference(self) -> FeedbackIn:
        if (self.update_id is None) == (self.message_id is None):
            raise ValueError("give exactly one of update_id and message_id")
        if self.value not in (1, -1):
            raise ValueError("value is 1 (like) or -1 (dislike)")
        return self


@router.get("/api/secretaries/{secretary_id}/versions", operation_id="versions")
def versions(svc: Svc, secretary_id: SecretaryPath) -> list[dict[str, Any]]:
    """Every version, newest first, with its state."""
    return [v.doc() for v in svc.registry.versions(secretary_id)]


@router.get("/api/secretaries/{secretary_id}/rollout", operation_id="rollout_status")
def rollout_status(svc: Svc, secretary_id: SecretaryPath) -> dict[str, Any]:
    """The newest rollout with live and candidate counts over its life."""
    return svc.registry.rollout_status(secretary_id)


@router.post("/api/secretaries/{secretary_id}/rollout", operation_id="rollout_start")
def rollout_start(svc: Svc, secretary_id: SecretaryPath, body: RolloutIn) -> dict[str, Any]:
    """Start serving a version to a share of the secretary's users."""
    from secretaries_core.catalog.registry.rollouts import Judging

    given = body.model_dump()
    rubric = given.pop("judge")
    judging = Judging(
        rubric, given.pop("judge_sample"), given.pop("max_judge_fail_rate"),
        given.pop("judge_model"),
    ) if rubric is not None else None  # fmt: skip
    for key in ("judge_sample", "max_judge_fail_rate", "judge_model"):
        given.pop(key, None)
    svc.registry.rollout_start(secretary_id, judge=judging, **given)
    return svc.registry.rollout_status(secretary_id)


@router.post("/api/secretaries/{secretary_id}/rollout/percent", operation_id="rollout_set")
def rollout_set(svc: Svc, secretary_id: SecretaryPath, body: PercentIn) -> dict[str, Any]:
    """Change the candidate's share."""
    svc.registry.rollout_set(secretary_id, body.percent)
    return svc.registry.rollout_status(secretary_id)


@router.post("/api/secretaries/{secretary_id}/rollout/promote", operation_id="rollout_promote")
def rollout_promote(svc: Svc, secretary_id: SecretaryPath) -> dict[str, Any]:
    """The candidate becomes live for everyone."""
    svc.registry.rollout_promote(secretary_id)
    return svc.registry.rollout_status(secretary_id)


@router.post("/api/secretaries/{secretary_id}/rollout/abort", operation_id="rollout_abort")
def rollout_abort(svc: Svc, secretary_id: SecretaryPath) -> dict[str, Any]:
    """Everyone back on the live version."""
    svc.registry.rollout_abort(secretary_id)
    return svc.registry.rollout_status(secretary_id)


class ReplayIn(BaseModel):
    """`replay`'s options."""

    version: int | None = None
    users: int = Field(default=10, ge=1, le=1000)


@router.post("/api/secretaries/{secretary_id}/replay", operation_id="replay")
async def replay(svc: Svc, secretary_id: SecretaryPath, body: ReplayIn) -> dict[str, Any]:
    """What a version would answer to stored conversations (nothing stored)."""
    from secretaries_core.evals.replay import replay as run

    number, results = await run(
        svc.orchestrator, secretary_id, version=body.version, users=body.users
    )
    return {
        "secretary": secretary_id,
        "version": number,
        "conversations": [r.doc() for r in results],
    }


class EvalIn(BaseModel):
    """`eval`'s options: the suite as JSON (the YAML file's document)."""

    suite: dict[str, Any]
    version: int | None = None


@router.post("/api/secretaries/{secretary_id}/eval", operation_id="eval")
async def run_eval(svc: Svc, secretary_id: SecretaryPath, body: EvalIn) -> dict[str, Any]:
    """Ask a version each case of the suite and check the replies (nothing stored; the
    result is kept as the version's latest eval). 200 whether or not every case passed."""
    from secretaries_core.evals.runner import run_eval as run
    from secretaries_core.evals.suite import suite_from_doc

    suite = suite_from_doc(body.suite)
    result = await run(svc.orchestrator, secretary_id, suite, version=body.version)
    return result.doc()


@router.post("/api/feedback", operation_id="feedback")
async def feedback(svc: Svc, body: FeedbackIn) -> dict[str, Any]:
    """Count the like or dislike for the version that wrote that reply."""
    version = await svc.orchestrator.feedback(
        body.telegram_id, body.value, update_id=body.update_id, message_id=body.message_id
    )
    return {"recorded": True, "version": version}
