"""/api/secretaries: the catalog."""

from __future__ import annotations

from fastapi import APIRouter, Query, status

from secretaries_api.routes.common import SecretaryPath, Svc
from secretaries_core.catalog.models import AssistantCreate, AssistantUpdate
from secretaries_core.catalog.schemas import SecretaryDetail, SecretaryOut

router = APIRouter(prefix="/api/secretaries", tags=["secretaries"])


@router.get("/", response_model=list[SecretaryOut], operation_id="list_secretaries")
def list_secretaries(
    svc: Svc,
    all: bool = Query(False, description="Include inactive"),
    assistants: bool = Query(False, description="Include assistants users cannot pick"),
) -> list[SecretaryOut]:
    """Available secretaries (all of them with `all=true`; every assistant with
    `assistants=true`)."""
    return svc.registry.list_secretaries(include_inactive=all, assistants=assistants)


@router.post(
    "/",
    response_model=SecretaryDetail,
    status_code=status.HTTP_201_CREATED,
    operation_id="create_secretary",
)
def create_secretary(svc: Svc, body: AssistantCreate) -> SecretaryDetail:
    """Add a secretary."""
    created = svc.registry.create_secretary(body)
    return svc.registry.secretary_detail(created.id)


@router.get("/{secretary_id}", response_model=SecretaryDetail, operation_id="get_secretary")
def get_secretary(svc: Svc, secretary_id: SecretaryPath) -> SecretaryDetail:
    """One secretary with its prompt and number of users."""
    return svc.registry.secretary_detail(secretary_id)


@router.patch("/{secretary_id}", response_model=SecretaryDetail, operation_id="update_secretary")
def update_secretary(
    svc: Svc,
    secretary_id: SecretaryPath,
    body: AssistantUpdate,
    draft: bool = Query(False, description="Make the new version a draft, not live"),
) -> SecretaryDetail:
    """Change a secretary; `version` goes up when model, prompt or params change.

    With `?draft=true` (the CLI's `update --draft`) the new version is kept as a draft
    for a rollout or a replay, and the live version stays.
    """
    change = svc.registry.update_secretary(secretary_id, body, draft=draft)
    return svc.registry.secretary_detail(change.secretary.id)


@router.post("/{secretary_id}/default", response_model=SecretaryDetail, operation_id="set_default")
def set_default(svc: Svc, secretary_id: SecretaryPath) -> SecretaryDetail:
    """Make it the default secretary."""
    change = svc.registry.set_default(secretary_id)
    return svc.registry.secretary_detail(change.secretary.id)


@router.post(
    "/{secretary_id}/deactivate", response_model=SecretaryDetail, operation_id="deactivate"
)
def deactivate(
    svc: Svc,
    secretary_id: SecretaryPath,
    reassign_to: str | None = Query(None, max_length=100, description="Move its users here"),
) -> SecretaryDetail:
    """Deactivate (never the default); optionally move its users first."""
    change = svc.registry.deactivate(secretary_id, reassign_to=reassign_to)
    return svc.registry.secretary_detail(change.secretary.id)


@router.post("/{secretary_id}/activate", response_model=SecretaryDetail, operation_id="activate")
def activate(svc: Svc, secretary_id: SecretaryPath) -> SecretaryDetail:
    """Make it available again."""
    change = svc.registry.activate(secretary_id)
    return svc.registry.secretary_detail(change.secretary.id)
