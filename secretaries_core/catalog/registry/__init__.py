"""`SecretaryRegistry`: the catalog, users, their links, resolution and bulk migration.

One facade over modules of one concern each: `catalog`, `users`, `links` (assignment and
resolution), `migration`; `base` holds the engine, change notification and lookups.
"""

from __future__ import annotations

from secretaries_core.catalog.registry.base import (
    Change,
    ChangeListener,
    ProgressCallback,
    Registration,
    Resolution,
    UserStatus,
)
from secretaries_core.catalog.registry.catalog import CatalogMixin, check_name, check_text
from secretaries_core.catalog.registry.links import LinksMixin
from secretaries_core.catalog.registry.migration import MigrationMixin
from secretaries_core.catalog.registry.users import UsersMixin

__all__ = [
    "Change",
    "ChangeListener",
    "ProgressCallback",
    "Registration",
    "Resolution",
    "SecretaryRegistry",
    "UserStatus",
    "check_name",
    "check_text",
]


class SecretaryRegistry(CatalogMixin, UsersMixin, LinksMixin, MigrationMixin):
    """Every catalog, user and link operation, each in its own transaction on `engine`."""
