"""Eval results per version, kept with a digest of what was evaluated (on Core alone).

A result is kept with a digest of what was evaluated — the version's model, prompt and
params, and the definitions of the tools it names — so a gate can tell an eval that no
longer describes the version (a tool it calls was re-registered since) from a current one.
The registry's release gate and a one-shot `secretaries eval` both run these.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select

from secretaries_core.catalog.reads import EVAL, VERSION, EvalRecord
from secretaries_core.errors import InvalidInput
from secretaries_core.usage.upsert import insert_for

MAX_FAILURES_KEPT = 50


def content_digest(conn: Any, model: str, prompt: str, params: dict[str, Any]) -> str:
    """What an eval evaluated: the version's content and its tools' definitions."""
    from secretaries_core.tools.spec import tools_param
    from secretaries_core.tools.table import TOOL_TABLE

    names = tools_param(params)
    tools = []
    if names:
        rows = conn.execute(
            select(TOOL_TABLE.c.name, TOOL_TABLE.c.kind, TOOL_TABLE.c.config)
            .where(TOOL_TABLE.c.name.in_(names))
            .order_by(TOOL_TABLE.c.name)
        ).all()
        tools = [[r.name, r.kind, r.config] for r in rows]
    text = json.dumps([model, prompt, params, tools], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def version_content(conn: Any, secretary_id: uuid.UUID, version: int) -> str:
    """The digest of a stored version's content; `InvalidInput` when there is no such version."""
    row = conn.execute(
        select(VERSION.c.model, VERSION.c.prompt, VERSION.c.params).where(
            VERSION.c.secretary_id == secretary_id, VERSION.c.version == version
        )
    ).first()
    if row is None:
        raise InvalidInput(f"no version {version}")
    return content_digest(conn, row.model, row.prompt, dict(row.params))


def record_eval(
    conn: Any,
    secretary_id: uuid.UUID,
    version: int,
    *,
    passed: int,
    failed: int,
    failures: list[str],
    content: tuple[str, str, dict[str, Any]] | None,
    now: datetime,
) -> EvalRecord:
    """Keep `version`'s latest eval (replacing the one before); version 0 with `content`
    (model, prompt, params): content not stored as a version yet."""
    digest = (
        content_digest(conn, *content)
        if content is not None
        else version_content(conn, secretary_id, version)
    )
    record = EvalRecord(passed, failed, now, digest, failures[:MAX_FAILURES_KEPT])
    values = {
        "passed": passed,
        "failed": failed,
        "content": record.content,
        "failures": record.failures,
        "at": record.at,
    }
    stmt = insert_for(conn.engine, EVAL).values(
        secretary_id=secretary_id, version=version, **values
    )
    conn.execute(
        stmt.on_conflict_do_update(index_elements=["secretary_id", "version"], set_=values)
    )
    return record
