"""Secretaries: create, change, make default, (de)activate, delete; name rules."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy import (
    select,
)
from sqlalchemy.orm import Session
from sqlmodel import col

from secretaries_core.catalog import secretary_writes, writes
from secretaries_core.catalog.models import (
    Assistant,
    AssistantCreate,
    AssistantUpdate,
)
from secretaries_core.catalog.registry.base import (
    Change,
)
from secretaries_core.catalog.registry.rollouts import RolloutsMixin
from secretaries_core.catalog.schemas import (
    SecretaryDetail,
    SecretaryOut,
)
from secretaries_core.catalog.secretary_writes import MAX_DESCRIPTION_CHARS as MAX_DESCRIPTION_CHARS
from secretaries_core.catalog.secretary_writes import NewSecretary
from secretaries_core.catalog.secretary_writes import check_name as check_name
from secretaries_core.catalog.secretary_writes import check_params as check_params
from secretaries_core.catalog.secretary_writes import check_text as check_text


class CatalogMixin(RolloutsMixin):
    """Secretaries: create, change, make default, (de)activate, delete; name rules."""

    # -- catalog ---------------------------------------------------------------------------

    def get_secretary(self, ref: str | uuid.UUID) -> Assistant:
        """The secretary named `ref` (or with that UUID), active or not."""
        return self._read(lambda s: self._secretary(s, ref))

    def secretary_detail(self, ref: str | uuid.UUID) -> SecretaryDetail:
        """The secretary with its prompt and its number of users."""

        def work(session: Session) -> SecretaryDetail:
            secretary = self._secretary(session, ref)
            users = self._user_counts(session, [secretary.id]).get(secretary.id, 0)
            return SecretaryDetail.of(secretary, users)

        return self._read(work)

    def list_secretaries(
        self, *, include_inactive: bool = False, assistants: bool = False
    ) -> list[SecretaryOut]:
        """The catalog ordered by name, each with its count of users; with `assistants`,
        the assistants users cannot pick too."""

        def work(session: Session) -> list[SecretaryOut]:
            query = select(Assistant)
            if not assistants:
                query = query.where(col(Assistant.is_secretary))
            if not include_inactive:
                query = query.where(col(Assistant.is_active))
            rows = session.scalars(query.order_by(col(Assistant.name))).all()
            counts = self._user_counts(session)
            return [SecretaryOut.of(row, counts.get(row.id, 0)) for row in rows]

        return self._read(work)

    def create_secretary(self, data: AssistantCreate) -> Assistant:
        """Add a secretary; with `is_default` it replaces the current default."""
        new = NewSecretary(
            name=data.name,
            model=data.model,
            prompt=data.prompt,
            description=data.description,
            params=data.params,
            is_default=data.is_default,
            is_secretary=data.is_secretary,
        )

        def work(session: Session) -> Assistant:
            return self._secretary(session, secretary_writes.create(session, new, self.clock()))

        return self._write(work, conflict=f"a secretary named {data.name!r} already exists")

    def update_secretary(
        self,
        ref: str | uuid.UUID,
        changes: AssistantUpdate,
        *,
        draft: bool = False,
        note: str | None = None,
    ) -> Change:
        """Apply `changes`; `params` merge into the old ones (a `None` value removes a key).

        A change of the model, the prompt or the params makes a new numbered version (its
        content kept, with `note`); with `draft` that version is stored but not made live
        (name and description changes still apply at once). `version` is the live number.
        """

        def work(session: Session) -> Change:
            done = secretary_writes.update_secretary(
                session, ref, changes.model_dump(), self.clock(), draft=draft, note=note
            )
            return Change(self._secretary(session, done.id), changed=done.changed)

        return self._write(work, conflict="the secretary changed concurrently; try again")

    def set_default(self, ref: str | uuid.UUID) -> Change:
        """Make `ref` the one default secretary."""
        return self._change(
            lambda session: writes.set_default(session, ref, self.clock()),
            conflict="the default changed concurrently; try again",
        )

    def deactivate(
        self, ref: str | uuid.UUID, *, reassign_to: str | uuid.UUID | None = None
    ) -> Change:
        """Deactivate a secretary that is not the default; optionally move its users first.

        Without `reassign_to` its users keep their links and fall back to the default.
        """
        change = self._change(
            lambda session: writes.deactivate(session, ref, reassign_to, self.clock()),
            conflict="links changed concurrently; try again",
        )
        if change.changed:
            self._changed("deactivated", change.secretary.id)
        return change

    def activate(self, ref: str | uuid.UUID) -> Change:
        """Make a secretary available again."""
        return self._change(
            lambda session: writes.activate(session, ref, self.clock()),
            conflict="the secretary changed concurrently; try again",
        )

    def _change(self, work: Callable[[Session], writes.Changed], *, conflict: str) -> Change:
        """Run a Core write of one secretary; the `Change` with the secretary after it."""

        def change(session: Session) -> Change:
            done = work(session)
            return Change(self._secretary(session, done.id), done.changed, done.moved_users)

        return self._write(change, conflict=conflict)

    def delete_secretary(self, ref: str | uuid.UUID) -> Assistant:
        """Delete a secretary that no link ever referenced (otherwise: deactivate it)."""

        def work(session: Session) -> Assistant:
            secretary = self._secretary(session, ref)
            session.expunge(secretary)  # kept as it was, for the caller
            writes.delete_secretary(session, secretary.id)
            return secretary

        deleted = self._write(work, conflict="the secretary changed concurrently; try again")
        self._changed("deactivated", deleted.id)
        return deleted
