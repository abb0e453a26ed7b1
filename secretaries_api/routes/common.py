"""Path parameters and dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path

from secretaries_api.schemas import USER_PATTERN
from secretaries_api.services import Services, services
from secretaries_core.catalog.refs import UserRef, parse_user_ref

Svc = Annotated[Services, Depends(services)]
UserPath = Annotated[str, Path(pattern=USER_PATTERN, description="Telegram user id, or @username")]
SecretaryPath = Annotated[
    str, Path(min_length=1, max_length=100, description="Secretary name or UUID")
]


def user_ref(value: str) -> UserRef:
    """The path's USER as the library takes it."""
    return parse_user_ref(value)
