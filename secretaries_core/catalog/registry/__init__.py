"""`SecretaryRegistry`: the catalog, users, their links, resolution and bulk migration.

One facade over modules of one concern each: `catalog`, `users`, `links` (assignment and
resolution), `migration`; `base` holds the engine, change notification and lookups.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from secretaries_core.catalog.reads import VersionInfo
from secretaries_core.catalog.refs import UserRef
from secretaries_core.catalog.registry.base import (
    Change,
    ChangeListener,
    ProgressCallback,
    Registration,
    Resolution,
    UserStatus,
)
from secretaries_core.catalog.registry.catalog import check_name, check_text
from secretaries_core.catalog.registry.catalog_file import CatalogFileMixin
from secretaries_core.catalog.registry.links import LinksMixin
from secretaries_core.catalog.registry.migration import MigrationMixin
from secretaries_core.catalog.registry.users import UsersMixin
from secretaries_core.catalog.registry.versions import Rollout, Served
from secretaries_core.catalog.rollout_hash import in_rollout
from secretaries_core.catalog.schemas import SecretaryOut

__all__ = [
    "Change",
    "ChangeListener",
    "ProgressCallback",
    "Registration",
    "Resolution",
    "Rollout",
    "SecretaryRegistry",
    "Served",
    "UserStatus",
    "VersionInfo",
    "check_name",
    "check_text",
    "in_rollout",
]


class SecretaryRegistry(CatalogFileMixin, UsersMixin, LinksMixin, MigrationMixin):
    """Every catalog, user and link operation, each in its own transaction on `engine`."""

    def current_version(self, user_ref: UserRef) -> tuple[Resolution, SecretaryOut, Served]:
        """`current` plus the version the user gets."""

        def work(session: Session) -> tuple[Resolution, SecretaryOut, Served]:
            found, users = self._resolve(session, user_ref)
            served = self._served(session, found.user, found.secretary)
            return found, SecretaryOut.of(found.secretary, users), served

        return self._read(work)
