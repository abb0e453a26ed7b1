"""Per-version counts (messages, errors, tokens, likes, dislikes) and the automatic rollback.

Counted in memory on the message path and written by a background thread every 0.25 s
(one upsert per flush, summed across every process by the database), for the period
`all` and, while a rollout runs, for that rollout's period too, so `rollout status`
compares live and candidate over the same time. After each write the rollouts it touched
are checked: once the candidate has handled `min_messages` and its error rate (or dislike
rate) is above the limit and above the live version's, the rollout ends as `rolled_back`
— once, whichever process sees it first — and every user is back on live within the
resolution TTL.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from secretaries_core.catalog.reads import COUNT, dislike_rate, error_rate, judge_fail_rate
from secretaries_core.plumbing.db import transaction
from secretaries_core.plumbing.flusher import BackgroundFlush
from secretaries_core.usage.upsert import insert_for

if TYPE_CHECKING:
    from secretaries_core.catalog.serving import ServingCatalog

log = logging.getLogger(__name__)
FIELDS = (
    "messages",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "likes",
    "dislikes",
    "judged",
    "judge_failed",
)
ALL = "all"
Key = tuple[uuid.UUID, int, str]


class VersionCounts(BackgroundFlush):
    """Buffered per-version counters and the rollback guard behind them."""

    what = "version counts"

    def __init__(
        self,
        registry: ServingCatalog,
        *,
        interval: float = 0.25,
        on_rollback: Callable[[str, str], None] | None = None,
    ) -> None:
        super().__init__(interval)
        self.registry = registry
        self.engine: Engine = registry.engine
        self.on_rollback = on_rollback
        self._pending: dict[Key, list[int]] = defaultdict(lambda: [0] * len(FIELDS))
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()

    def add(
        self,
        secretary_id: uuid.UUID,
        version: int,
        rollout: uuid.UUID | None,
        *,
        period: str | None = None,
        **counts: int,
    ) -> None:
        """Count for the version over its life and, in a rollout, over the rollout's.

        `period` instead counts apart under that name only (`replay`: never in the
        version's life or a rollout's comparison).
        """
        values = [counts.get(f, 0) for f in FIELDS]
        if period is not None:
            periods = [period]
        else:
            periods = [ALL] if rollout is None else [ALL, rollout.hex]
        with self._lock:
            for period in periods:
                row = self._pending[(secretary_id, version, period)]
                for i, value in enumerate(values):
                    row[i] += value
        self._started()

    def flush(self) -> None:
        """Write what is counted so far, then check the rollouts it touched."""
        with self._write_lock:
            with self._lock:
                batch, self._pending = self._pending, defaultdict(lambda: [0] * len(FIELDS))
            if not batch:
                return
            rows = [
                {"secretary_id": s, "version": v, "period": p, **dict(zip(FIELDS, c, strict=True))}
                for (s, v, p), c in batch.items()
            ]
            try:
                insert = insert_for(self.engine, COUNT)
                statement = insert.on_conflict_do_update(
                    index_elements=["secretary_id", "version", "period"],
                    set_={f: COUNT.c[f] + insert.excluded[f] for f in FIELDS},
                )
                with transaction(self.engine, write=True) as conn:
                    conn.execute(statement, rows)
            except Exception:
                with self._lock:
                    for key, counts in batch.items():
                        row = self._pending[key]
                        for i, value in enumerate(counts):
                            row[i] += value
                raise
        for period in {p for (_s, _v, p) in batch if len(p) == 32}:
            self.check(uuid.UUID(hex=period))

    def check(self, rollout_id: uuid.UUID) -> str | None:
        """Roll the rollout back if its candidate is worse than allowed; the reason if so."""
        rollout = self.registry.running_rollout(rollout_id)
        if rollout is None:
            return None
        found = self.registry.rollout_counts(rollout)
        candidate, live = found.get(rollout.candidate_version), found.get(rollout.live_version)
        if candidate is None:
            return None
        reason = _judged_worse(rollout, candidate)
        if reason is not None:
            return self._roll_back(rollout, reason)
        if candidate.messages < rollout.min_messages:
            return None
        reason = _worse(
            rollout.max_error_rate, error_rate(candidate), error_rate(live), "error"
        ) or _worse(
            rollout.max_dislike_rate, dislike_rate(candidate), dislike_rate(live), "dislike"
        )
        if reason is None:
            return None
        return self._roll_back(rollout, f"{reason} after {candidate.messages} candidate message(s)")

    def _roll_back(self, rollout: Any, reason: str) -> str:
        if self.registry.roll_back_rollout(rollout.id, reason):
            name = self._name(rollout.secretary_id)
            log.warning("rollout of %s rolled back: %s", name, reason)
            if self.on_rollback is not None:
                self.on_rollback(name, reason)
        return reason

    def _name(self, secretary_id: uuid.UUID) -> str:
        try:
            return self.registry.get_secretary(secretary_id).name
        except Exception:  # the rollout is what matters; a name is for the log
            return str(secretary_id)


def _judged_worse(rollout: Any, candidate: Any) -> str | None:
    """The judge's reason to roll back: more than `min_messages` judged replies and a
    failure rate above the rollout's limit (the same minimum sample as for errors)."""
    limit = rollout.max_judge_fail_rate
    judged = int(getattr(candidate, "judged", 0) or 0)
    if limit is None or judged < rollout.min_messages:
        return None
    rate = judge_fail_rate(candidate)
    if rate <= limit:
        return None
    return f"candidate judge fail rate {rate:.2f} above {limit:g} over {judged} judged reply(ies)"


def _worse(limit: float | None, candidate: float, live: float, what: str) -> str | None:
    if limit is None or not (candidate > limit and candidate > live):
        return None
    return f"candidate {what} rate {candidate:.2f} above {limit:g} (live {live:.2f})"
