"""Rollouts and rollback on SQLAlchemy Core: start, set, promote, abort, end, rollback.

The registry runs these in its session (and tells its listeners); the CLI runs them on a
bare connection without loading the ORM. A rollout row is `Rollout`; a version's state
(live, candidate, draft, retired) moves with it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import func, select, update

from secretaries_core.catalog import writes
from secretaries_core.catalog.reads import ROLLOUT, SECRETARY, VERSION
from secretaries_core.errors import Conflict, InvalidInput, NotFound

RolloutState = Literal["running", "promoted", "aborted", "rolled_back"]
DEFAULT_MIN_MESSAGES = 50
EvalCheck = Callable[[Any, str, uuid.UUID, int], None]
"""`check(conn, name, secretary_id, version)`: raises unless the version may roll out."""


@dataclass(frozen=True)
class Rollout:
    """A rollout row."""

    id: uuid.UUID
    secretary_id: uuid.UUID
    live_version: int
    candidate_version: int
    percent: int
    state: RolloutState
    max_error_rate: float | None
    max_dislike_rate: float | None
    min_messages: int
    started_at: datetime
    ended_at: datetime | None
    reason: str | None
    judge_rubric: str | None = None
    judge_model: str | None = None
    judge_sample: float | None = None
    max_judge_fail_rate: float | None = None


def row_rollout(row: Any) -> Rollout:
    """The `Rollout` of a rollout row."""
    return Rollout(**{c: getattr(row, c) for c in Rollout.__dataclass_fields__})


@dataclass(frozen=True)
class Judging:
    """A rollout's judge: the rubric, the model, the sample (percent of the candidate's
    replies) and the failure rate that rolls the candidate back."""

    rubric: str
    sample: float = 100.0
    max_fail_rate: float | None = None
    model: str | None = None

    def check(self) -> None:
        """`InvalidInput` saying what is wrong."""
        if not self.rubric.strip():
            raise InvalidInput("--judge needs a rubric (what a good reply does)")
        if not 0 < self.sample <= 100:
            raise InvalidInput(f"--judge-sample is a percent in (0, 100], got {self.sample:g}")
        if self.max_fail_rate is not None and not 0 <= self.max_fail_rate <= 1:
            raise InvalidInput(
                f"--max-judge-fail-rate is a fraction between 0 and 1, got {self.max_fail_rate}"
            )

    def columns(self) -> dict[str, Any]:
        """The rollout row's judge columns."""
        return {
            "judge_rubric": self.rubric,
            "judge_model": self.model,
            "judge_sample": self.sample,
            "max_judge_fail_rate": self.max_fail_rate,
        }


def check_percent(percent: int) -> None:
    """`--percent` is 0 to 100."""
    if not 0 <= percent <= 100:
        raise InvalidInput(f"--percent is 0 to 100, got {percent}")


def check_start(
    percent: int,
    max_error_rate: float | None,
    max_dislike_rate: float | None,
    min_messages: int,
    judge: Judging | None,
) -> None:
    """A rollout's limits as `rollout start` takes them; `InvalidInput` otherwise."""
    check_percent(percent)
    if judge is not None:
        judge.check()
    for name, rate in (("max error rate", max_error_rate), ("max dislike rate", max_dislike_rate)):
        if rate is not None and not 0 <= rate <= 1:
            raise InvalidInput(f"the {name} is a fraction between 0 and 1, got {rate}")
    if min_messages < 1:
        raise InvalidInput(f"--min-messages must be at least 1, got {min_messages}")


def running(conn: Any, secretary_id: uuid.UUID) -> Rollout | None:
    """The secretary's running rollout, if any."""
    row = conn.execute(
        select(ROLLOUT).where(ROLLOUT.c.secretary_id == secretary_id, ROLLOUT.c.state == "running")
    ).first()
    return row_rollout(row) if row is not None else None


def _rollout(conn: Any, rollout_id: uuid.UUID) -> Rollout:
    return row_rollout(conn.execute(select(ROLLOUT).where(ROLLOUT.c.id == rollout_id)).one())


def _require_running(conn: Any, secretary: Any) -> Rollout:
    found = running(conn, secretary.id)
    if found is None:
        raise NotFound(f"{secretary.name} has no running rollout")
    return found


def set_state(conn: Any, secretary_id: uuid.UUID, version: int, state: str) -> None:
    """Version `version` of the secretary is now `state`."""
    conn.execute(
        update(VERSION)
        .where(VERSION.c.secretary_id == secretary_id, VERSION.c.version == version)
        .values(state=state)
    )


def end_rollout(
    conn: Any, secretary_id: uuid.UUID, state: RolloutState, reason: str | None, now: datetime
) -> bool:
    """End the secretary's running rollout as `state` (once); False when none was running.
    An aborted candidate is a draft again; one rolled back is retired."""
    found = running(conn, secretary_id)
    if found is None:
        return False
    done = conn.execute(
        update(ROLLOUT)
        .where(ROLLOUT.c.id == found.id, ROLLOUT.c.state == "running")
        .values(state=state, ended_at=now, reason=reason)
    )
    if state != "promoted":
        back = "retired" if state == "rolled_back" else "draft"
        set_state(conn, secretary_id, found.candidate_version, back)
    return bool(done.rowcount)


def next_version(conn: Any, secretary: Any) -> int:
    """The number a new version of the secretary gets."""
    top = conn.execute(
        select(func.max(VERSION.c.version)).where(VERSION.c.secretary_id == secretary.id)
    ).scalar_one_or_none()
    return max(int(top or 0), int(secretary.version)) + 1


def _newest_draft(conn: Any, secretary: Any) -> int:
    found = conn.execute(
        select(func.max(VERSION.c.version)).where(
            VERSION.c.secretary_id == secretary.id,
            VERSION.c.version > secretary.version,
            VERSION.c.state.in_(("draft", "candidate")),
        )
    ).scalar_one_or_none()
    if found is None:
        raise InvalidInput(
            f"{secretary.name} has no draft to roll out",
            hint=f"; make one with `secretaries update {secretary.name} ... --draft` "
            "or pass --version",
        )
    return int(found)


def rollout_start(
    conn: Any,
    ref: str | uuid.UUID,
    now: datetime,
    *,
    percent: int,
    version: int | None = None,
    max_error_rate: float | None = None,
    max_dislike_rate: float | None = None,
    min_messages: int = DEFAULT_MIN_MESSAGES,
    eval_check: EvalCheck | None = None,
    judge: Judging | None = None,
) -> Rollout:
    """Serve VERSION (default: the newest draft) to PERCENT% of SEC's users; `eval_check`
    refuses a version whose latest eval did not pass."""
    check_start(percent, max_error_rate, max_dislike_rate, min_messages, judge)
    secretary = writes.secretary(conn, ref, lock=True)
    if running(conn, secretary.id) is not None:
        raise Conflict(
            f"{secretary.name} already has a running rollout",
            hint=f"; `secretaries rollout status {secretary.name}`",
        )
    chosen = version if version is not None else _newest_draft(conn, secretary)
    row = writes.version_row(conn, secretary, chosen, now)
    if row.version == secretary.version:
        raise InvalidInput(f"version {chosen} is already live")
    if eval_check is not None:
        eval_check(conn, secretary.name, secretary.id, row.version)
    rollout_id = open_rollout(
        conn,
        secretary.id,
        secretary.version,
        row.version,
        percent,
        now,
        max_error_rate=max_error_rate,
        max_dislike_rate=max_dislike_rate,
        min_messages=min_messages,
        judge=judge,
    )
    set_state(conn, secretary.id, row.version, "candidate")
    return _rollout(conn, rollout_id)


def open_rollout(
    conn: Any,
    secretary_id: uuid.UUID,
    live_version: int,
    candidate_version: int,
    percent: int,
    now: datetime,
    *,
    max_error_rate: float | None = None,
    max_dislike_rate: float | None = None,
    min_messages: int = DEFAULT_MIN_MESSAGES,
    judge: Judging | None = None,
) -> uuid.UUID:
    """Store a running rollout row (checked by the caller); its id."""
    rollout_id = uuid.uuid4()
    conn.execute(
        ROLLOUT.insert().values(
            id=rollout_id,
            secretary_id=secretary_id,
            live_version=live_version,
            candidate_version=candidate_version,
            percent=percent,
            state="running",
            max_error_rate=max_error_rate,
            max_dislike_rate=max_dislike_rate,
            min_messages=min_messages,
            started_at=now,
            **(judge.columns() if judge is not None else {}),
        )
    )
    return rollout_id


def rollout_set(conn: Any, ref: str | uuid.UUID, percent: int) -> Rollout:
    """Change the share of users on the candidate (raising it only adds users)."""
    check_percent(percent)
    secretary = writes.secretary(conn, ref, lock=True)
    found = _require_running(conn, secretary)
    conn.execute(update(ROLLOUT).where(ROLLOUT.c.id == found.id).values(percent=percent))
    return _rollout(conn, found.id)


def rollout_promote(conn: Any, ref: str | uuid.UUID, now: datetime) -> Rollout:
    """The candidate becomes live for everyone, under its own number (its counts stay)."""
    secretary = writes.secretary(conn, ref, lock=True)
    found = _require_running(conn, secretary)
    row = writes.version_row(conn, secretary, found.candidate_version, now)
    end_rollout(conn, secretary.id, "promoted", None, now)
    conn.execute(
        update(SECRETARY)
        .where(SECRETARY.c.id == secretary.id)
        .values(
            model=row.model,
            prompt=row.prompt,
            params=dict(row.params),
            version=row.version,
            updated_at=now,
        )
    )
    conn.execute(
        update(VERSION)
        .where(VERSION.c.secretary_id == secretary.id, VERSION.c.state == "live")
        .values(state="retired")
    )
    set_state(conn, secretary.id, row.version, "live")
    return _rollout(conn, found.id)


def rollout_abort(
    conn: Any, ref: str | uuid.UUID, now: datetime, *, reason: str | None = None
) -> Rollout:
    """Everyone back on the live version; the candidate stays a draft."""
    secretary = writes.secretary(conn, ref, lock=True)
    found = _require_running(conn, secretary)
    end_rollout(conn, secretary.id, "aborted", reason, now)
    return _rollout(conn, found.id)


def rollback(
    conn: Any, ref: str | uuid.UUID, to: int, now: datetime, *, note: str | None = None
) -> tuple[uuid.UUID, str, int]:
    """Version `to`'s content becomes live as a new version; any rollout of SEC ends.
    (the secretary's id, its name, the new version's number)."""
    secretary = writes.secretary(conn, ref, lock=True)
    row = writes.version_row(conn, secretary, to, now)
    end_rollout(conn, secretary.id, "aborted", f"rollback to version {to}", now)
    number = next_version(conn, secretary)
    writes.make_live(
        conn, secretary.id, number, note or f"rollback to version {to}", now,
        model=row.model, prompt=row.prompt, params=dict(row.params),
    )  # fmt: skip
    return secretary.id, secretary.name, number
