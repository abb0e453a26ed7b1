"""Secretaries: create, change, make default, (de)activate, delete; name rules."""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    func,
    select,
)
from sqlalchemy.orm import Session
from sqlmodel import col

from secretaries_core.catalog import linksql, writes
from secretaries_core.catalog.models import (
    Assistant,
    AssistantCreate,
    AssistantUpdate,
)
from secretaries_core.catalog.refs import SECRETARY_NAME_RE as NAME_RE
from secretaries_core.catalog.registry.base import (
    Change,
    _as_uuid,
)
from secretaries_core.catalog.registry.rollouts import RolloutsMixin
from secretaries_core.catalog.schemas import (
    SecretaryDetail,
    SecretaryOut,
)
from secretaries_core.catalog.versions_tables import (
    PIN_TABLE,
    ROLLOUT_TABLE,
    VERSION_COUNT_TABLE,
    VERSION_TABLE,
)
from secretaries_core.errors import (
    Conflict,
    InvalidInput,
    UnstorableInput,
)
from secretaries_core.llm.providers import parse_model

# What the picker and `list` show beside the name (longer text belongs in the prompt).
MAX_DESCRIPTION_CHARS = 200


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
        _check_secretary_fields(data.name, data.model, data.prompt, data.description)
        check_params(data.params)
        if data.is_default and not data.is_secretary:
            raise InvalidInput(
                "an assistant users cannot pick (--no-secretary) cannot be the default"
            )

        def work(session: Session) -> Assistant:
            _refuse_taken_name(session, data.name)
            self._check_models(session, data.model, data.params, data.name)
            now = self.clock()
            if data.is_default:
                _clear_default(session, now)
            secretary = Assistant(
                **data.model_dump(exclude={"is_default"}),
                is_default=data.is_default,
                created_at=now,
                updated_at=now,
            )
            session.add(secretary)
            session.flush()
            self._add_version(session, secretary, secretary.version, "live", None)
            return secretary

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

        if changes.params is not None:
            check_params(changes.params)

        def work(session: Session) -> Change:
            secretary = self._secretary(session, ref, lock=True)
            new: dict[str, Any] = {}
            for field in ("name", "description", "model", "prompt"):
                value = getattr(changes, field)
                if value is not None and value != getattr(secretary, field):
                    new[field] = value
            if changes.params is not None:
                merged = {**secretary.params, **changes.params}
                merged = {k: v for k, v in merged.items() if v is not None}
                if merged != secretary.params:
                    new["params"] = merged
            if not new:
                return Change(secretary, changed=False)
            # Only what changes is checked: older rows that break today's rules keep working.
            _check_secretary_fields(
                new.get("name"),
                new.get("model", secretary.model),
                new.get("prompt"),
                new.get("description"),
            )
            if "name" in new:
                _refuse_taken_name(session, new["name"], besides=secretary.id)
            content: dict[str, Any] = {
                k: new.pop(k) for k in ("model", "prompt", "params") if k in new
            }
            if content:
                self._check_models(
                    session,
                    content.get("model", secretary.model),
                    content.get("params", secretary.params),
                    new.get("name", secretary.name),
                )
                self._ensure_live_row(session, secretary)
                number = self._next_version(session, secretary)
                if draft:
                    self._add_version(session, secretary, number, "draft", note, **content)
                else:
                    new.update(content, version=number)
            for field, value in new.items():
                setattr(secretary, field, value)
            secretary.updated_at = self.clock()
            session.flush()
            if content and not draft:
                self._add_version(session, secretary, number, "live", note)
            return Change(secretary, changed=True)

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
            secretary = self._secretary(session, ref, lock=True)
            if secretary.is_default:
                raise Conflict(
                    f"{secretary.name!r} is the default; make another secretary the default first",
                    hint=" (`secretaries set-default SEC`)",
                )
            used = session.execute(
                select(func.count())
                .select_from(linksql.LINK)
                .where(linksql.LINK.c.secretary_id == secretary.id)
            ).scalar_one()
            if used:
                raise Conflict(
                    f"{secretary.name!r} is in {used} link(s) of users' history and cannot be "
                    "deleted",
                    hint=f"; run `secretaries deactivate {secretary.name}` instead",
                )
            for table in (PIN_TABLE, VERSION_COUNT_TABLE, ROLLOUT_TABLE, VERSION_TABLE):
                session.execute(table.delete().where(table.c.secretary_id == secretary.id))
            session.delete(secretary)
            session.flush()
            return secretary

        deleted = self._write(work, conflict="the secretary changed concurrently; try again")
        self._changed("deactivated", deleted.id)
        return deleted


def _refuse_taken_name(session: Session, name: str, besides: uuid.UUID | None = None) -> None:
    # Case-insensitively: `Alice` and `alice` would be the same secretary to a person.
    query = select(col(Assistant.name)).where(func.lower(col(Assistant.name)) == name.lower())
    if besides is not None:
        query = query.where(col(Assistant.id) != besides)
    taken = session.scalars(query).first()
    if taken is not None:
        raise Conflict(f"a secretary named {taken!r} already exists")


def _clear_default(session: Session, now: datetime) -> None:
    writes.clear_default(session, now)


# Control characters other than tab, newline and carriage return (prompt files use CRLF).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def check_name(name: str) -> None:
    """A new secretary name: 1-64 letters, digits, `-`, `_`, `.` (not a UUID)."""
    if not NAME_RE.fullmatch(name):
        raise InvalidInput(
            f"invalid secretary name {name!r}: use 1 to 64 letters, digits, '-', '_' or '.'"
        )
    if _as_uuid(name) is not None:
        raise InvalidInput("a secretary's name cannot look like a UUID")


MAX_PARAMS_DEPTH = 32
# A model string: printable ASCII without spaces (`openai/gpt-4o-mini`, `llama3:8b`).
MODEL_RE = re.compile(r"[\x21-\x7e]{1,200}")


def check_params(params: Any) -> None:
    """Params must be storable JSON: no NUL or lone surrogate anywhere, at most 32 deep."""
    stack: list[tuple[Any, int, str]] = [(params, 1, "params")]
    while stack:
        value, depth, where = stack.pop()
        if depth > MAX_PARAMS_DEPTH:
            raise UnstorableInput(f"params are nested deeper than {MAX_PARAMS_DEPTH} levels")
        if isinstance(value, str):
            _check_storable_text(where, value)
        elif isinstance(value, float) and not math.isfinite(value):
            raise UnstorableInput(f"{where} is not a finite number")
        elif isinstance(value, dict):
            for key, item in value.items():
                _check_storable_text(f"a key of {where}", str(key))
                stack.append((item, depth + 1, f"{where}.{str(key)[:40]}"))
        elif isinstance(value, list | tuple):
            stack.extend((item, depth + 1, f"{where}[{i}]") for i, item in enumerate(value))


def _check_storable_text(field: str, value: str) -> None:
    from secretaries_core.conversation.text import check_storable

    check_storable(value, field)


def check_text(field: str, value: str) -> None:
    """Descriptions and prompts: any text but control characters (tab and newlines are fine)."""
    _check_storable_text(f"the {field}", value)
    found = _CONTROL.search(value)
    if found:
        raise InvalidInput(
            f"the {field} contains the control character U+{ord(found.group()):04X}; "
            "only tab and newlines are allowed"
        )


def _check_secretary_fields(
    name: str | None, model: str, prompt: str | None, description: str | None = ""
) -> None:
    """Check the fields being set (None: not being changed)."""
    if name is not None:
        check_name(name)
    for field, value in (("prompt", prompt), ("description", description)):
        if value is not None:
            check_text(field, value)
    if description is not None and len(description) > MAX_DESCRIPTION_CHARS:
        raise InvalidInput(
            f"a description is one line for users choosing a secretary: at most "
            f"{MAX_DESCRIPTION_CHARS} characters, got {len(description)}"
        )
    if "\x00" in model:
        raise UnstorableInput("text fields cannot contain NUL characters")
    if not model.strip():
        raise InvalidInput("a secretary needs a model")
    if not MODEL_RE.fullmatch(model.strip()):
        raise UnstorableInput(
            f"invalid model {model[:60]!r}: use printable ASCII without spaces, "
            "like openai/gpt-4o-mini"
        )
    parse_model(model)  # its syntax; that its provider exists is checked with the database
    if prompt is not None and not prompt.strip():
        raise InvalidInput("a secretary needs a non-empty prompt")
