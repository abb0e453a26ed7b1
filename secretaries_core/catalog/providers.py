"""Named model providers on SQLAlchemy Core: add (or replace) and remove.

The registry runs these in its session (and tells its listeners); the CLI runs them on a
bare connection, without loading the ORM. Removing is refused while any secretary, or
any version of one, names the provider in its model or its fallbacks.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select

from secretaries_core.catalog.reads import SECRETARY, VERSION
from secretaries_core.errors import Conflict, InvalidInput, NotFound
from secretaries_core.llm.model_names import (
    BUILT_IN,
    PROVIDER_NAME_RE,
    Provider,
    models_of,
    parse_model,
)
from secretaries_core.llm.providers_table import PROVIDER_TABLE
from secretaries_core.redact import mask_url

ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def check_provider(name: str, base_url: str, api_key_env: str | None) -> None:
    """A provider's fields as `providers add` takes them; `InvalidInput` otherwise."""
    if not PROVIDER_NAME_RE.fullmatch(name) or name in BUILT_IN:
        raise InvalidInput(
            f"invalid provider name {name!r}: 1-32 lowercase letters, digits, '-', '_', "
            f"starting with a letter, not {' or '.join(BUILT_IN)}"
        )
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"the base URL must be http(s)://host…, got {mask_url(base_url)!r}")
    if parts.password:
        raise InvalidInput("put the key in an environment variable (--api-key-env), not in the URL")
    if api_key_env is not None and not ENV_NAME_RE.fullmatch(api_key_env):
        raise InvalidInput(f"--api-key-env takes a variable name, got {api_key_env[:40]!r}")


def add_provider(
    conn: Any, name: str, base_url: str, api_key_env: str | None, now: datetime
) -> Provider:
    """Add (or replace) a provider; the key stays in the environment variable named."""
    check_provider(name, base_url, api_key_env)
    conn.execute(PROVIDER_TABLE.delete().where(PROVIDER_TABLE.c.name == name))
    conn.execute(
        PROVIDER_TABLE.insert().values(
            name=name, base_url=base_url, api_key_env=api_key_env, created_at=now
        )
    )
    return Provider(name, base_url, api_key_env)


def all_contents(conn: Any) -> list[tuple[str, str, object]]:
    """(secretary name, model, params) of every secretary's live content and every version."""
    live = conn.execute(select(SECRETARY.c.name, SECRETARY.c.model, SECRETARY.c.params)).all()
    versions = conn.execute(
        select(SECRETARY.c.name, VERSION.c.model, VERSION.c.params).join(
            SECRETARY, SECRETARY.c.id == VERSION.c.secretary_id
        )
    ).all()
    return [(r[0], r[1], r[2]) for r in [*live, *versions]]


def remove_provider(conn: Any, name: str) -> None:
    """Remove a provider no secretary (or version of one) uses; else `Conflict` naming them."""
    found = conn.execute(select(PROVIDER_TABLE.c.name).where(PROVIDER_TABLE.c.name == name))
    if found.first() is None:
        raise NotFound(f"no provider {name!r}", hint="; see `secretaries providers list`")
    users = sorted(
        {
            secretary
            for secretary, model, params in all_contents(conn)
            if any(parse_model(m)[0] == name for m in models_of(model, params))
        }
    )
    if users:
        raise Conflict(
            f"provider {name!r} is used by {', '.join(users)}; change their model or "
            "fallback_models first"
        )
    conn.execute(PROVIDER_TABLE.delete().where(PROVIDER_TABLE.c.name == name))
