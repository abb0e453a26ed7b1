"""The table of named model providers (migration 0006): a name, a base URL, a key's env var.

The key itself is never stored: only the name of the environment variable that holds it,
read when the provider's client is made.
"""

from __future__ import annotations

from sqlalchemy import Column, String, Table, Text

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
