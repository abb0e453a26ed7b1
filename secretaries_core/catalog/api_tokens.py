"""Scoped API tokens: made once, stored only as a hash, checked on every request.

Scopes, narrowest first:
- `ingress`: what a bot front sends — `POST /api/updates`, `POST /api/messages`,
  `POST /api/feedback`;
- `read`: every `GET` (and `/metrics` when it is closed);
- `admin`: everything (`SECRETARIES_API_TOKEN` is an admin token).

A token is 32 random bytes (URL-safe text) behind a `sec_` prefix, so the SHA-256 of it is
a safe thing to store and look up: nothing short enough to guess is ever hashed.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import Column, Engine, String, Table, delete, select

from secretaries_core.errors import Conflict, InvalidInput, NotFound
from secretaries_core.plumbing.core_tables import CORE_METADATA
from secretaries_core.plumbing.db import transaction
from secretaries_core.plumbing.timeutil import UTCDateTime, utcnow

Scope = Literal["admin", "ingress", "read"]
SCOPES: tuple[Scope, ...] = ("admin", "ingress", "read")
# Routes an ingress token may call: (method, path).
INGRESS_ROUTES = frozenset(
    {("POST", "/api/updates"), ("POST", "/api/messages"), ("POST", "/api/feedback")}
)
TOKEN_PREFIX = "sec_"
NAME_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# A revoked token stops working within this many seconds in every API process.
CACHE_S = 2.0

TOKEN_TABLE = Table(
    "api_token",
    CORE_METADATA,
    Column("name", String(64), primary_key=True),
    Column("scope", String(16), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime(), nullable=False),
)


@dataclass(frozen=True)
class TokenInfo:
    """One stored token, without the token."""

    name: str
    scope: Scope
    created_at: datetime

    def as_dict(self) -> dict[str, str]:
        """The document of `tokens list --json`."""
        return {"name": self.name, "scope": self.scope, "created_at": self.created_at.isoformat()}


def digest(token: str) -> str:
    """What is stored of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def allows(scope: str, method: str, path: str) -> bool:
    """True when a token of `scope` may call `method path`."""
    if scope == "admin":
        return True
    if scope == "read":
        return method in ("GET", "HEAD")
    return scope == "ingress" and (method, path.rstrip("/") or "/") in INGRESS_ROUTES


class ApiTokens:
    """The tokens of one database, with a short-lived cache of lookups."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._cache: dict[str, tuple[float, str | None]] = {}
        self._lock = threading.Lock()

    def create(self, name: str, scope: str) -> str:
        """Store a new token named `name`; returns the token (shown once, never stored)."""
        if not NAME_RULE.fullmatch(name):
            raise InvalidInput(
                f"bad token name {name[:70]!r}: 1-64 ASCII letters, digits, '_', '.' or '-', "
                "starting with a letter or digit"
            )
        if scope not in SCOPES:
            raise InvalidInput(f"unknown scope {scope!r}: use one of {', '.join(SCOPES)}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with transaction(self.engine, write=True) as conn:
            found = conn.execute(select(TOKEN_TABLE.c.name).where(TOKEN_TABLE.c.name == name))
            if found.first() is not None:
                raise Conflict(f"a token named {name!r} exists: revoke it first, or pick a name")
            conn.execute(
                TOKEN_TABLE.insert().values(
                    name=name, scope=scope, token_hash=digest(token), created_at=utcnow()
                )
            )
        return token

    def list(self) -> list[TokenInfo]:
        """Every token, by name (never the token itself)."""
        t = TOKEN_TABLE.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.name, t.scope, t.created_at).order_by(t.name)).all()
        return [TokenInfo(name, scope, created) for name, scope, created in rows]

    def revoke(self, name: str) -> None:
        """Delete the token named `name`; `NotFound` when there is none."""
        with transaction(self.engine, write=True) as conn:
            gone = conn.execute(
                delete(TOKEN_TABLE).where(TOKEN_TABLE.c.name == name),
                execution_options={"preserve_rowcount": True},
            ).rowcount
        if not gone:
            raise NotFound(f"no token named {name!r} (see: secretaries tokens list)")
        with self._lock:
            self._cache.clear()

    def scope_of(self, token: str) -> str | None:
        """The scope of `token`, or None when it is no stored token (cached `CACHE_S`)."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        key = digest(token)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        with self.engine.connect() as conn:
            row = conn.execute(
                select(TOKEN_TABLE.c.scope).where(TOKEN_TABLE.c.token_hash == key)
            ).first()
        scope = str(row[0]) if row is not None else None
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (now + CACHE_S, scope)
        return scope

    def cached_scope(self, token: str) -> tuple[bool, str | None]:
        """(known, scope) from the cache alone, without touching the database."""
        if not token.startswith(TOKEN_PREFIX):
            return True, None
        hit = self._cache.get(digest(token))
        if hit is None or hit[0] <= time.monotonic():
            return False, None
        return True, hit[1]
