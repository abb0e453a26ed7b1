"""Rollouts of a candidate version, rollback, and which version serves a user.

Which version serves a user (the resolution's last stage):

1. a pin of that user to that secretary (`pin USER SEC --version N`) → `pinned`;
2. a running rollout whose hash of (user, secretary, rollout) falls under its percent →
   the candidate, `rollout`;
3. otherwise the live version, `live`.

The hash is stable, so a user stays on one side for a rollout's life, and raising the
percentage only adds users (a user is in at P% iff their bucket is below P x 100).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from secretaries_core.catalog.models import Assistant, TelegramUser
from secretaries_core.catalog.reads import (
    SERVED_MARKS,
    rollout_document,
)
from secretaries_core.catalog.registry.base import Change
from secretaries_core.catalog.registry.evals import EvalsMixin
from secretaries_core.catalog.registry.versions import (
    DEFAULT_MIN_MESSAGES,
    Rollout,
    RolloutState,
    Served,
    VersionsMixin,
    _row_rollout,
)
from secretaries_core.catalog.rollout_hash import chosen_version
from secretaries_core.catalog.versions_tables import (
    ROLLOUT_TABLE,
    VERSION_COUNT_TABLE,
    VERSION_TABLE,
)
from secretaries_core.errors import Conflict, InvalidInput, NotFound


class RolloutsMixin(VersionsMixin, EvalsMixin):
    """Rollouts, rollback and the served version."""

    def rollback(self, ref: str | uuid.UUID, to: int, *, note: str | None = None) -> Change:
        """Version `to`'s content becomes live as a new version; any rollout of SEC ends."""

        def work(session: Session) -> Change:
            secretary = self._secretary(session, ref, lock=True)
            row = self._version_row(session, secretary, to)
            self._end_rollout(session, secretary.id, "aborted", f"rollback to version {to}")
            number = self._next_version(session, secretary)
            self._make_live(session, secretary, number, row, note or f"rollback to version {to}")
            return Change(secretary, changed=True)

        return self._write(work, conflict="the secretary changed meanwhile; try again")

    def _make_live(
        self, session: Session, secretary: Assistant, number: int, row: Any, note: str | None
    ) -> None:
        secretary.model, secretary.prompt = row.model, row.prompt
        secretary.params = dict(row.params)
        secretary.version = number
        secretary.updated_at = self.clock()
        self._add_version(
            session,
            secretary,
            number,
            "live",
            note,
            model=row.model,
            prompt=row.prompt,
            params=dict(row.params),
        )
        session.flush()

    def rollout_start(
        self,
        ref: str | uuid.UUID,
        *,
        percent: int,
        version: int | None = None,
        max_error_rate: float | None = None,
        max_dislike_rate: float | None = None,
        min_messages: int = DEFAULT_MIN_MESSAGES,
        require_eval: bool = False,
        judge: Judging | None = None,
    ) -> Rollout:
        """Serve VERSION (default: the newest draft) to PERCENT% of SEC's users; with
        `require_eval`, only a version whose latest eval passed; with `judge`, a sample of
        the candidate's replies is judged and a failing rate rolls it back."""
        _check_percent(percent)
        if judge is not None:
            judge.check()
        for name, rate in (
            ("max error rate", max_error_rate),
            ("max dislike rate", max_dislike_rate),
        ):
            if rate is not None and not 0 <= rate <= 1:
                raise InvalidInput(f"the {name} is a fraction between 0 and 1, got {rate}")
        if min_messages < 1:
            raise InvalidInput(f"--min-messages must be at least 1, got {min_messages}")

        def work(session: Session) -> Rollout:
            secretary = self._secretary(session, ref, lock=True)
            if self._running(session, secretary.id) is not None:
                raise Conflict(
                    f"{secretary.name} already has a running rollout",
                    hint=f"; `secretaries rollout status {secretary.name}`",
                )
            chosen = version if version is not None else self._newest_draft(session, secretary)
            row = self._version_row(session, secretary, chosen)
            if row.version == secretary.version:
                raise InvalidInput(f"version {chosen} is already live")
            if require_eval:
                self._require_eval(session, secretary.name, secretary.id, row.version)
            rollout_id = uuid.uuid4()
            session.execute(
                ROLLOUT_TABLE.insert().values(
                    id=rollout_id,
                    secretary_id=secretary.id,
                    live_version=secretary.version,
                    candidate_version=row.version,
                    percent=percent,
                    state="running",
                    max_error_rate=max_error_rate,
                    max_dislike_rate=max_dislike_rate,
                    min_messages=min_messages,
                    started_at=self.clock(),
                    **(judge.columns() if judge is not None else {}),
                )
            )
            self._set_state(session, secretary.id, row.version, "candidate")
            found = self._running(session, secretary.id)
            assert found is not None
            return found

        try:
            return self._write(work, conflict="a rollout of this secretary is already running")
        except IntegrityError as exc:  # two starts raced: the partial unique index decided
            raise Conflict("a rollout of this secretary is already running") from exc

    def _newest_draft(self, session: Session, secretary: Assistant) -> int:
        found = session.execute(
            select(func.max(VERSION_TABLE.c.version)).where(
                VERSION_TABLE.c.secretary_id == secretary.id,
                VERSION_TABLE.c.version > secretary.version,
                VERSION_TABLE.c.state.in_(("draft", "candidate")),
            )
        ).scalar_one_or_none()
        if found is None:
            raise InvalidInput(
                f"{secretary.name} has no draft to roll out",
                hint=f"; make one with `secretaries update {secretary.name} ... --draft` "
                "or pass --version",
            )
        return int(found)

    def _require_running(self, session: Session, secretary: Assistant) -> Rollout:
        running = self._running(session, secretary.id)
        if running is None:
            raise NotFound(f"{secretary.name} has no running rollout")
        return running

    def rollout_set(self, ref: str | uuid.UUID, percent: int) -> Rollout:
        """Change the share of users on the candidate (raising it only adds users)."""
        _check_percent(percent)

        def work(session: Session) -> Rollout:
            secretary = self._secretary(session, ref, lock=True)
            running = self._require_running(session, secretary)
            session.execute(
                update(ROLLOUT_TABLE)
                .where(ROLLOUT_TABLE.c.id == running.id)
                .values(percent=percent)
            )
            found = self._running(session, secretary.id)
            assert found is not None
            return found

        result: Rollout = self._write(work, conflict="the rollout changed meanwhile; try again")
        return result

    def rollout_promote(self, ref: str | uuid.UUID) -> Rollout:
        """The candidate becomes live for everyone."""

        def work(session: Session) -> Rollout:
            secretary = self._secretary(session, ref, lock=True)
            running = self._require_running(session, secretary)
            row = self._version_row(session, secretary, running.candidate_version)
            self._end_rollout(session, secretary.id, "promoted", None)
            # The candidate's own number goes live (its counts stay with it).
            secretary.model, secretary.prompt = row.model, row.prompt
            secretary.params = dict(row.params)
            secretary.version = row.version
            secretary.updated_at = self.clock()
            session.execute(
                update(VERSION_TABLE)
                .where(
                    VERSION_TABLE.c.secretary_id == secretary.id, VERSION_TABLE.c.state == "live"
                )
                .values(state="retired")
            )
            self._set_state(session, secretary.id, row.version, "live")
            session.flush()
            return self._rollout(session, running.id)

        result: Rollout = self._write(work, conflict="the rollout changed meanwhile; try again")
        return result

    def rollout_abort(self, ref: str | uuid.UUID, *, reason: str | None = None) -> Rollout:
        """Everyone back on the live version; the candidate stays a draft."""

        def work(session: Session) -> Rollout:
            secretary = self._secretary(session, ref, lock=True)
            running = self._require_running(session, secretary)
            self._end_rollout(session, secretary.id, "aborted", reason)
            return self._rollout(session, running.id)

        result: Rollout = self._write(work, conflict="the rollout changed meanwhile; try again")
        return result

    def _rollout(self, session: Session, rollout_id: uuid.UUID) -> Rollout:
        return _row_rollout(
            session.execute(select(ROLLOUT_TABLE).where(ROLLOUT_TABLE.c.id == rollout_id)).one()
        )

    def _end_rollout(
        self, session: Session, secretary_id: uuid.UUID, state: RolloutState, reason: str | None
    ) -> bool:
        running = self._running(session, secretary_id)
        if running is None:
            return False
        done = session.execute(
            update(ROLLOUT_TABLE)
            .where(ROLLOUT_TABLE.c.id == running.id, ROLLOUT_TABLE.c.state == "running")
            .values(state=state, ended_at=self.clock(), reason=reason)
        )
        if state != "promoted":
            back = "retired" if state == "rolled_back" else "draft"
            self._set_state(session, secretary_id, running.candidate_version, back)
        return bool(cast(CursorResult[Any], done).rowcount)

    def roll_back_rollout(self, rollout_id: uuid.UUID, reason: str) -> bool:
        """End a running rollout as `rolled_back` (once, whoever calls it first); True if so."""

        def work(session: Session) -> bool:
            row = session.execute(
                select(ROLLOUT_TABLE).where(
                    ROLLOUT_TABLE.c.id == rollout_id, ROLLOUT_TABLE.c.state == "running"
                )
            ).first()
            if row is None:
                return False
            return self._end_rollout(session, row.secretary_id, "rolled_back", reason)

        result: bool = self._write(work, conflict="the rollout changed meanwhile")
        return result

    def rollout_status(self, ref: str | uuid.UUID) -> dict[str, Any]:
        """The newest rollout of SEC with both sides' counts over its life (SPEC shape)."""

        def work(session: Session) -> dict[str, Any]:
            secretary = self._secretary(session, ref)
            found = rollout_document(session, secretary.id, secretary.name)
            if found is None:
                raise NotFound(f"{secretary.name} has never had a rollout")
            return found

        result: dict[str, Any] = self._read(work)
        return result

    def rollout_counts(self, rollout: Rollout) -> dict[int, Any]:
        """Each version's counts over the rollout's life (rows by version number)."""
        return self._read(lambda session: _rollout_counts(session, rollout))

    def running_rollout(self, rollout_id: uuid.UUID) -> Rollout | None:
        """The rollout if it is still running."""

        def work(session: Session) -> Rollout | None:
            row = session.execute(
                select(ROLLOUT_TABLE).where(
                    ROLLOUT_TABLE.c.id == rollout_id, ROLLOUT_TABLE.c.state == "running"
                )
            ).first()
            return _row_rollout(row) if row is not None else None

        result: Rollout | None = self._read(work)
        return result

    def _served(self, session: Session, user: TelegramUser, secretary: Assistant) -> Served:
        # One round trip in the common case (no pin, no rollout): both looked up at once.
        marks = session.execute(SERVED_MARKS, {"u": user.id, "s": secretary.id}).first()
        values: tuple[Any, ...] = tuple(marks) if marks is not None else (None,) * 4
        rollout_id = values[1]
        live = Served(
            secretary.version,
            secretary.model,
            secretary.prompt,
            dict(secretary.params),
            "live",
            rollout_id,
        )
        wanted, source = chosen_version(user.telegram_id, secretary.id, secretary.version, values)
        if source == "pinned":
            rollout_id = None
        if wanted is None:
            return live if source == "live" else replace(live, source="pinned", rollout=None)
        row = session.execute(
            select(VERSION_TABLE).where(
                VERSION_TABLE.c.secretary_id == secretary.id, VERSION_TABLE.c.version == wanted
            )
        ).first()
        if row is None:
            return live
        return Served(
            row.version,
            row.model,
            row.prompt,
            dict(row.params),
            cast(Any, source),
            rollout_id,
        )

    def rollout_of(self, secretary_id: uuid.UUID, version: int) -> uuid.UUID | None:
        """The running rollout of the secretary, if `version` is one of its two sides."""

        def work(session: Session) -> uuid.UUID | None:
            running = self._running(session, secretary_id)
            if running is None or version not in (running.live_version, running.candidate_version):
                return None
            return running.id

        return self._read(work)


def _rollout_counts(session: Session, rollout: Rollout) -> dict[int, Any]:
    rows = session.execute(
        select(VERSION_COUNT_TABLE).where(
            VERSION_COUNT_TABLE.c.secretary_id == rollout.secretary_id,
            VERSION_COUNT_TABLE.c.period == rollout.id.hex,
        )
    )
    return {row.version: row for row in rows}


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


def _check_percent(percent: int) -> None:
    if not 0 <= percent <= 100:
        raise InvalidInput(f"--percent is 0 to 100, got {percent}")
