"""Applying a catalog file (catalog/as_code.py) in one transaction."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from secretaries_core.catalog import catalog_apply
from secretaries_core.catalog.as_code import Declared, PlannedChange, plan
from secretaries_core.catalog.models import Assistant
from secretaries_core.catalog.registry.catalog import CatalogMixin
from secretaries_core.catalog.schemas import SecretaryDetail


class CatalogFileMixin(CatalogMixin):
    """`plan` and `apply` of a declared catalog."""

    def _catalog_rows(self, session: Session) -> list[Assistant]:
        return list(session.scalars(select(Assistant)).all())  # assistants are declared too

    def plan_catalog(self, declared: list[Declared], *, prune: bool) -> list[PlannedChange]:
        """What `apply_catalog` would change; nothing is written."""
        return self._read(
            lambda s: plan(
                declared, [SecretaryDetail.of(r, 0) for r in self._catalog_rows(s)], prune=prune
            )
        )

    def apply_catalog(
        self,
        declared: list[Declared],
        *,
        prune: bool,
        canary: int | None = None,
        require_eval: bool = False,
    ) -> list[PlannedChange]:
        """Make the catalog what `declared` says, in one transaction; the changes made.

        With `canary`, a changed secretary's new model/prompt/params become a draft rolled
        out to that percent of its users instead of going live; with `require_eval`, only
        when that content's latest eval passed (else nothing is written).
        """

        def work(session: Session) -> list[PlannedChange]:
            return catalog_apply.apply_catalog(
                session,
                declared,
                self.clock(),
                prune=prune,
                canary=canary,
                eval_check=self._require_eval if require_eval else None,
            )

        return self._write(work, conflict="the catalog changed meanwhile (a name taken?); retry")
