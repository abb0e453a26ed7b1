"""Applying a catalog file (catalog/as_code.py) on SQLAlchemy Core, in the caller's
transaction: the plan, then each change it lists, or nothing when any would be refused.

The registry runs this in its session (and tells its listeners); the CLI's `apply` runs
it on a bare connection without loading the ORM.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import update

from secretaries_core.catalog import rollout_writes, writes
from secretaries_core.catalog.as_code import Declared, PlannedChange, plan
from secretaries_core.catalog.reads import SECRETARY, catalog_rows
from secretaries_core.catalog.rollout_writes import EvalCheck
from secretaries_core.catalog.secretary_writes import check_models, insert_secretary
from secretaries_core.errors import Conflict

NOTE = "catalog file"


def apply_catalog(
    conn: Any,
    declared: list[Declared],
    now: datetime,
    *,
    prune: bool,
    canary: int | None = None,
    eval_check: EvalCheck | None = None,
) -> list[PlannedChange]:
    """Make the catalog what `declared` says; the changes made.

    With `canary`, a changed secretary's new model/prompt/params become a candidate rolled
    out to that percent of its users instead of going live; `eval_check` refuses a
    candidate whose content has no passing eval (then the caller's transaction rolls back).
    """
    items = {d.name: d for d in declared}
    changes = plan(declared, catalog_rows(conn), prune=prune)
    refused = [c.refused for c in changes if c.refused]
    if refused:
        raise Conflict("; ".join(refused))
    for index, change in enumerate(changes):
        item = items.get(change.secretary)
        if item is not None and change.action in ("create", "update"):
            check_models(conn, item.model, item.params, item.name)
        if change.action == "create" and item is not None:
            _create(conn, item, now)
        elif change.action == "update" and item is not None:
            row = writes.secretary(conn, item.name, lock=True)
            started = _update(conn, row, item, change, now, canary, eval_check)
            if started is not None:
                changes[index] = replace(change, rollout=started)
        elif change.action == "set_default":
            writes.clear_default(conn, now)
            _set(conn, writes.secretary(conn, change.secretary).id, now, is_default=True)
        elif change.action == "deactivate":
            row = writes.secretary(conn, change.secretary, lock=True)
            if row.is_default:
                raise Conflict(
                    f"{row.name!r} is the default and cannot be pruned; "
                    "name another default in the file"
                )
            _set(conn, row.id, now, is_active=False)
    for row in catalog_rows(conn):
        if row.is_default and not row.is_active:
            raise Conflict(f"the default {row.name!r} cannot be made inactive")
    return changes


def _set(conn: Any, sec_id: uuid.UUID, now: datetime, **values: Any) -> None:
    conn.execute(update(SECRETARY).where(SECRETARY.c.id == sec_id).values(**values, updated_at=now))


def _create(conn: Any, item: Declared, now: datetime) -> None:
    insert_secretary(
        conn,
        now,
        note=NOTE,
        name=item.name,
        description=item.description,
        model=item.model,
        prompt=item.prompt,
        params=dict(item.params),
        is_secretary=item.secretary,
        is_active=item.active,
        is_default=False,
    )


def _update(
    conn: Any,
    row: Any,
    item: Declared,
    change: PlannedChange,
    now: datetime,
    canary: int | None,
    eval_check: EvalCheck | None,
) -> str | None:
    """Make one update; with `canary`, as a rollout: then what started (for output)."""
    content: dict[str, Any] = {}
    if "model" in change.fields:
        content["model"] = item.model
    if "prompt" in change.fields:
        content["prompt"] = item.prompt
    if "params" in change.fields:
        content["params"] = dict(item.params)
    plain: dict[str, Any] = {}
    if "description" in change.fields:
        plain["description"] = item.description
    if "active" in change.fields:
        plain["is_active"] = item.active
    _set(conn, row.id, now, **plain)
    if not content:
        return None
    writes.ensure_live_row(conn, row, now)
    number = rollout_writes.next_version(conn, row)
    if canary is None:
        writes.make_live(conn, row.id, number, NOTE, now, **content)
        return None
    if rollout_writes.running(conn, row.id) is not None:
        raise Conflict(f"{row.name} already has a running rollout; end it before --canary")
    writes.add_version(conn, row, number, "candidate", f"{NOTE} (canary)", now, **content)
    if eval_check is not None:
        eval_check(conn, row.name, row.id, number)
    rollout_writes.open_rollout(conn, row.id, row.version, number, canary, now)
    return (
        f"rollout started: version {number} to {canary}% of {row.name}'s users "
        f"(version {row.version} stays live; `secretaries rollout status {row.name}`)"
    )
