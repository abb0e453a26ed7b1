"""Applying a catalog file (catalog/as_code.py) in one transaction."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from secretaries_core.catalog.as_code import Declared, PlannedChange, plan
from secretaries_core.catalog.models import Assistant
from secretaries_core.catalog.registry.catalog import CatalogMixin, _clear_default
from secretaries_core.catalog.schemas import SecretaryDetail
from secretaries_core.catalog.versions_tables import ROLLOUT_TABLE
from secretaries_core.errors import Conflict


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
        items = {d.name: d for d in declared}

        def work(session: Session) -> list[PlannedChange]:
            rows = self._catalog_rows(session)
            changes = plan(declared, [SecretaryDetail.of(r, 0) for r in rows], prune=prune)
            refused = [c.refused for c in changes if c.refused]
            if refused:
                raise Conflict("; ".join(refused))
            by_name = {r.name: r for r in rows}
            now = self.clock()
            for change in changes:
                item = items.get(change.secretary)
                if item is not None and change.action in ("create", "update"):
                    self._check_models(session, item.model, item.params, item.name)
                if change.action == "create" and item is not None:
                    row = Assistant(
                        name=item.name,
                        model=item.model,
                        prompt=item.prompt,
                        description=item.description,
                        params=dict(item.params),
                        is_active=item.active,
                        is_default=False,
                        is_secretary=item.secretary,
                        created_at=now,
                        updated_at=now,
                    )
                    session.add(row)
                    session.flush()
                    self._add_version(session, row, row.version, "live", "catalog file")
                    by_name[row.name] = row
                elif change.action == "update" and item is not None:
                    started = self._apply_update(
                        session, by_name[item.name], item, change, canary, require_eval
                    )
                    if started is not None:
                        changes[changes.index(change)] = replace(change, rollout=started)
                elif change.action == "set_default":
                    _clear_default(session, now)
                    session.flush()
                    by_name[change.secretary].is_default = True
                elif change.action == "deactivate":
                    row = by_name[change.secretary]
                    if row.is_default:
                        raise Conflict(
                            f"{row.name!r} is the default and cannot be pruned; "
                            "name another default in the file"
                        )
                    row.is_active = False
                    row.updated_at = now
                session.flush()
            for row in by_name.values():
                if row.is_default and not row.is_active:
                    raise Conflict(f"the default {row.name!r} cannot be made inactive")
            return changes

        return self._write(work, conflict="the catalog changed meanwhile (a name taken?); retry")

    def _apply_update(
        self,
        session: Session,
        row: Assistant,
        item: Declared,
        change: PlannedChange,
        canary: int | None,
        require_eval: bool = False,
    ) -> str | None:
        """Make one update; with `canary`, as a rollout: then what started (for output)."""
        content: dict[str, Any] = {}
        if "model" in change.fields:
            content["model"] = item.model
        if "prompt" in change.fields:
            content["prompt"] = item.prompt
        if "params" in change.fields:
            content["params"] = dict(item.params)
        if "description" in change.fields:
            row.description = item.description
        if "active" in change.fields:
            row.is_active = item.active
        row.updated_at = self.clock()
        if not content:
            return None
        self._ensure_live_row(session, row)
        number = self._next_version(session, row)
        if canary is None:
            for key, value in content.items():
                setattr(row, key, value)
            row.version = number
            session.flush()
            self._add_version(session, row, number, "live", "catalog file")
            return None
        if self._running(session, row.id) is not None:
            raise Conflict(f"{row.name} already has a running rollout; end it before --canary")
        self._add_version(session, row, number, "candidate", "catalog file (canary)", **content)
        if require_eval:
            self._require_eval(session, row.name, row.id, number)
        session.execute(
            ROLLOUT_TABLE.insert().values(
                id=uuid.uuid4(),
                secretary_id=row.id,
                live_version=row.version,
                candidate_version=number,
                percent=canary,
                state="running",
                max_error_rate=None,
                max_dislike_rate=None,
                min_messages=50,
                started_at=self.clock(),
            )
        )
        return (
            f"rollout started: version {number} to {canary}% of {row.name}'s users "
            f"(version {row.version} stays live; `secretaries rollout status {row.name}`)"
        )
