"""Bearer-token auth, compared in constant time."""

from __future__ import annotations

from fastapi import HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

# Declares the bearer scheme in the OpenAPI document (the Authorize button, generated
# clients that send the token); the check itself is below (and in guard.py, earlier).
BEARER = HTTPBearer(
    auto_error=False,
    description=(
        "SECRETARIES_API_TOKEN (admin) or a scoped token from `secretaries tokens create`: "
        "`ingress` may call POST /api/updates, /api/messages and /api/feedback; `read` every "
        "GET; `admin` everything. A valid token outside its scope gets 403."
    ),
)


async def require_token(
    request: Request,
    _credentials: HTTPAuthorizationCredentials | None = Security(BEARER),
) -> None:
    """Declares the bearer scheme on every protected route of the OpenAPI document.

    The check itself is `guard.Access`, before the body is read: token, then scope (a
    request that reaches this dependency passed it). `async` for no I/O: FastAPI runs a
    plain `def` dependency on a thread.
    """
    if request.app.state.access is not None and not request.scope.get("secretaries.auth"):
        raise HTTPException(
            status_code=401,
            detail="missing or bad bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
