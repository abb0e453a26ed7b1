"""The table of named model providers (migration 0006): a name, a base URL, a key's env var.

The key itself is never stored: only the name of the environment variable that holds it,
read when the provider's client is made.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, String, Table, Text, select

from secretaries_core.plumbing.core_tables import CORE_METADATA
from secretaries_core.plumbing.timeutil import UTCDateTime

PROVIDER_TABLE = Table(
    "provider",
    CORE_METADATA,
    Column("name", String(32), primary_key=True),
    Column("base_url", Text, nullable=False),
    Column("api_key_env", String(128), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
)

BUILT_IN_KEY_ENV = "SECRETARIES_OPENAI_API_KEY"


def provider_rows(conn: Any) -> list[tuple[str, str, str | None]]:
    """Every named provider, by name: (name, base URL, the key's variable); `conn` is a
    Connection or an ORM Session."""
    rows = conn.execute(select(PROVIDER_TABLE).order_by(PROVIDER_TABLE.c.name))
    return [(r.name, r.base_url, r.api_key_env) for r in rows]


def listing(openai_base_url: str, rows: list[tuple[str, str, str | None]]) -> list[dict[str, Any]]:
    """`providers list --json`: the built-in `openai` first, then the named ones; every
    URL masked."""
    from secretaries_core.redact import mask_url

    built_in = ("openai", openai_base_url, BUILT_IN_KEY_ENV, True)
    return [
        {"name": name, "base_url": mask_url(url), "api_key_env": env, "built_in": fixed}
        for name, url, env, fixed in [built_in, *((*r, False) for r in rows)]
    ]
