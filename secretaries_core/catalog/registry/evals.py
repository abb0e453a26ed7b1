"""The release gate that requires a passing eval of the version about to go out.

Results are kept (with a digest of what was evaluated) by `catalog/eval_records.py`; a
gate tells an eval that no longer describes the version (a tool it calls was
re-registered since) from a current one.
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from secretaries_core.catalog.eval_records import version_content
from secretaries_core.catalog.reads import EvalRecord, latest_evals
from secretaries_core.errors import InvalidInput


class EvalsMixin:
    """Keeping eval results and checking them (mixed into the registry)."""

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
        content = version_content(session, secretary_id, version)
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
