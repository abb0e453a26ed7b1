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
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from secretaries_core.catalog import rollout_writes
from secretaries_core.catalog.models import Assistant, TelegramUser
from secretaries_core.catalog.reads import (
    rollout_document,
)
from secretaries_core.catalog.registry.base import Change
from secretaries_core.catalog.registry.evals import EvalsMixin
from secretaries_core.catalog.registry.versions import (
    DEFAULT_MIN_MESSAGES,
    Rollout,
    RolloutState,
    VersionsMixin,
)
from secretaries_core.catalog.rollout_writes import Judging as Judging
from secretaries_core.catalog.serving import Served, served
from secretaries_core.errors import Conflict, NotFound


class RolloutsMixin(VersionsMixin, EvalsMixin):
    """Rollouts, rollback and the served version."""

    def rollback(self, ref: str | uuid.UUID, to: int, *, note: str | None = None) -> Change:
        """Version `to`'s content becomes live as a new version; any rollout of SEC ends."""

        def work(session: Session) -> Change:
            sec_id, _name, _number = rollout_writes.rollback(
                session, ref, to, self.clock(), note=note
            )
            return Change(self._secretary(session, sec_id), changed=True)

        return self._write(work, conflict="the secretary changed meanwhile; try again")

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

        def work(session: Session) -> Rollout:
            return rollout_writes.rollout_start(
                session,
                ref,
                self.clock(),
                percent=percent,
                version=version,
                max_error_rate=max_error_rate,
                max_dislike_rate=max_dislike_rate,
                min_messages=min_messages,
                eval_check=self._require_eval if require_eval else None,
                judge=judge,
            )

        try:
            return self._write(work, conflict="a rollout of this secretary is already running")
        except IntegrityError as exc:  # two starts raced: the partial unique index decided
            raise Conflict("a rollout of this secretary is already running") from exc

    def rollout_set(self, ref: str | uuid.UUID, percent: int) -> Rollout:
        """Change the share of users on the candidate (raising it only adds users)."""
        return self._write(
            lambda session: rollout_writes.rollout_set(session, ref, percent),
            conflict="the rollout changed meanwhile; try again",
        )

    def rollout_promote(self, ref: str | uuid.UUID) -> Rollout:
        """The candidate becomes live for everyone."""
        return self._write(
            lambda session: rollout_writes.rollout_promote(session, ref, self.clock()),
            conflict="the rollout changed meanwhile; try again",
        )

    def rollout_abort(self, ref: str | uuid.UUID, *, reason: str | None = None) -> Rollout:
        """Everyone back on the live version; the candidate stays a draft."""
        return self._write(
            lambda session: rollout_writes.rollout_abort(session, ref, self.clock(), reason=reason),
            conflict="the rollout changed meanwhile; try again",
        )

    def _end_rollout(
        self, session: Session, secretary_id: uuid.UUID, state: RolloutState, reason: str | None
    ) -> bool:
        return rollout_writes.end_rollout(session, secretary_id, state, reason, self.clock())

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

    def _served(self, session: Session, user: TelegramUser, secretary: Assistant) -> Served:
        assert user.id is not None
        return served(session, user.id, user.telegram_id, secretary)
