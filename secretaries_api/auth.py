"""Bearer-token auth, compared in constant time."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request


def require_token(request: Request) -> None:
    """Reject the request unless `Authorization: Bearer <token>` matches (when auth is on)."""
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
