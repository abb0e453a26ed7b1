"""Bearer-token auth, compared in constant time."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

# Declares the bearer scheme in the OpenAPI document (the Authorize button, generated
# clients that send the token); the check itself is below (and in guard.py, earlier).
BEARER = HTTPBearer(auto_error=False, description="SECRETARIES_API_TOKEN")


async def require_token(
    request: Request,
    _credentials: HTTPAuthorizationCredentials | None = Security(BEARER),
) -> None:
    """Reject the request unless `Authorization: Bearer <token>` matches (when auth is on).

    `async` for no I/O: FastAPI runs a plain `def` dependency on a thread, a hop that
    cost more than the check on every protected request.
    """
    token: str | None = request.app.state.api_token
    if token is None:
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
        raise HTTPException(
            status_code=401,
            detail="missing or bad bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
