"""Eval results per version, and the release gate that requires a passing one.

A result is kept with a digest of what was evaluated — the version's model, prompt and
params, and the definitions of the tools it names — so a gate can tell an eval that no
longer describes the version (a tool it calls was re-registered since) from a current one.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from secretaries_core.catalog.reads import EvalRecord, latest_evals
from secretaries_core.catalog.versions_tables import EVAL_TABLE, VERSION_TABLE
from secretaries_core.errors import InvalidInput
from secretaries_core.usage.upsert import insert_for

MAX_FAILURES_KEPT = 50


def content_digest(session: Session, model: str, prompt: str, params: dict[str, Any]) -> str:
    """What an eval evaluated: the version's content and its tools' definitions."""
    from secretaries_core.tools.spec import tools_param
    from secretaries_core.tools.table import TOOL_TABLE

    names = tools_param(params)
    tools = []
    if names:
        rows = session.execute(
            select(TOOL_TABLE.c.name, TOOL_TABLE.c.kind, TOOL_TABLE.c.config)
            .where(TOOL_TABLE.c.name.in_(names))
            .order_by(TOOL_TABLE.c.name)
        ).all()
        tools = [[r.name, r.kind, r.config] for r in rows]
    text = json.dumps([model, prompt, params, tools], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class EvalsMixin:
    """Keeping eval results and checking them (mixed into the registry)."""

    def _version_content(self, session: Session, secretary_id: uuid.UUID, version: int) -> str:
        row = session.execute(
            select(VERSION_TABLE.c.model, VERSION_TABLE.c.prompt, VERSION_TABLE.c.params).where(
                VERSION_TABLE.c.secretary_id == secretary_id, VERSION_TABLE.c.version == version
            )
        ).first()
        if row is None:
            raise InvalidInput(f"no version {version}")
        return content_digest(session, row.model, row.prompt, dict(row.params))

    def record_eval(
        self,
        secretary_id: uuid.UUID,
        version: int,
        *,
        passed: int,
        failed: int,
        failures: list[str],
        content: tuple[str, str, dict[str, Any]] | None = None,
    ) -> EvalRecord:
        """Keep `version`'s latest eval (replacing the one before); version 0 with
        `content` (model, prompt, params): content not stored as a version yet."""

        def work(session: Session) -> EvalRecord:
            digest = (
                content_digest(session, *content)
                if content is not None
                else self._version_content(session, secretary_id, version)
            )
            record = EvalRecord(
                passed,
                failed,
                self.clock(),  # type: ignore[attr-defined]
                digest,
                failures[:MAX_FAILURES_KEPT],
            )
            values = {
                "passed": passed,
                "failed": failed,
                "content": record.content,
                "failures": record.failures,
                "at": record.at,
            }
            stmt = insert_for(session.get_bind(), EVAL_TABLE).values(  # type: ignore[arg-type]
                secretary_id=secretary_id, version=version, **values
            )
            session.execute(
                stmt.on_conflict_do_update(index_elements=["secretary_id", "version"], set_=values)
            )
            return record

        result: EvalRecord = self._write(work, conflict="the eval was recorded concurrently")  # type: ignore[attr-defined]
        return result

    @staticmethod
    def _evals(session: Session, secretary_id: uuid.UUID) -> dict[int, EvalRecord]:
        return latest_evals(session, secretary_id)

    def _require_eval(
        self, session: Session, name: str, secretary_id: uuid.UUID, version: int
    ) -> None:
        """`InvalidInput` unless `version`'s latest eval passed and still describes it.

        An eval of the same content under another number counts too (a draft evaluated,
        then the same content applied from a catalog file as a new candidate)."""
        evals = self._evals(session, secretary_id)
        content = self._version_content(session, secretary_id, version)
        found = evals.get(version)
        same = [e for e in evals.values() if e.content == content]
        if (found is None or found.content != content) and same:
            found = max(same, key=lambda e: e.at)
        run = f"secretaries eval {name} --version {version} --suite FILE"
        if found is None:
            raise InvalidInput(f"version {version} of {name} has no eval: run `{run}` first")
        if found.failed:
            cases = "; ".join(found.failures[:5]) or f"{found.failed} case(s)"
            raise InvalidInput(
                f"the latest eval of {name} version {version} failed {found.failed} "
                f"case(s): {cases}"
            )
        if found.content != content:
            raise InvalidInput(
                f"the latest eval of {name} version {version} is older than its content "
                f"(a tool it calls changed since): run `{run}` again"
            )
