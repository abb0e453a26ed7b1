"""Secretaries on SQLAlchemy Core: the rules of their fields, create and update.

The registry runs `create` and `update` in its session (and tells its listeners); the
CLI runs them on a bare connection, without loading the ORM, SQLModel or pydantic. The
field rules live here, one definition for every way in (CLI, REST, catalog files).
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update

from secretaries_core.catalog import writes
from secretaries_core.catalog.reads import SECRETARY
from secretaries_core.catalog.refs import SECRETARY_NAME_RE as NAME_RE
from secretaries_core.errors import Conflict, InvalidInput, UnstorableInput
from secretaries_core.llm.model_names import models_of, parse_model, validate_model

# What the picker and `list` show beside the name (longer text belongs in the prompt).
MAX_DESCRIPTION_CHARS = 200


def refuse_taken_name(conn: Any, name: str, besides: uuid.UUID | None = None) -> None:
    """`Conflict` when another secretary has this name in any case."""
    # Case-insensitively: `Alice` and `alice` would be the same secretary to a person.
    query = select(SECRETARY.c.name).where(func.lower(SECRETARY.c.name) == name.lower())
    if besides is not None:
        query = query.where(SECRETARY.c.id != besides)
    taken = conn.execute(query).scalars().first()
    if taken is not None:
        raise Conflict(f"a secretary named {taken!r} already exists")


# Control characters other than tab, newline and carriage return (prompt files use CRLF).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def check_name(name: str) -> None:
    """A new secretary name: 1-64 ASCII letters, digits, `-`, `_`, `.` (not a UUID)."""
    if not NAME_RE.fullmatch(name):
        raise InvalidInput(
            f"invalid secretary name {name!r}: use 1 to 64 ASCII letters, digits, '-', '_' or '.'"
        )
    if writes.as_uuid(name) is not None:
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


def check_secretary_fields(
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


def check_models(conn: Any, model: str, params: object, name: str | None = None) -> None:
    """Every model string of a secretary's content names a known provider, its tools
    exist, and (given its `name`) no assistant it can ask can ask it back."""
    from secretaries_core.llm.providers_table import PROVIDER_TABLE

    known = [r[0] for r in conn.execute(select(PROVIDER_TABLE.c.name))]
    for each in models_of(model, params):
        validate_model(each, known)
    check_tools(conn, params)
    if name is not None:
        from secretaries_core.tools.nesting import refuse_cycles

        refuse_cycles(conn, name, params)


def check_tools(conn: Any, params: object) -> None:
    """The tools a version names are registered, and its tool params are sound."""
    from secretaries_core.tools.spec import max_rounds, tool_timeout, tools_param
    from secretaries_core.tools.table import TOOL_TABLE

    if not isinstance(params, dict):
        return
    names = tools_param(params)
    if names:
        known = {r[0] for r in conn.execute(select(TOOL_TABLE.c.name))}
        missing = [n for n in names if n not in known]
        if missing:
            raise InvalidInput(
                f"unknown tool(s) {', '.join(repr(n[:40]) for n in missing)} in tools: "
                "register them first (secretaries tools add), see: secretaries tools list"
            )
    max_rounds(params)
    tool_timeout(params)


@dataclass(frozen=True)
class NewSecretary:
    """What `create` takes."""

    name: str
    model: str
    prompt: str
    description: str = ""
    params: dict[str, Any] | None = None
    is_default: bool = False
    # False: an assistant users cannot pick (a tool's callee); never the default.
    is_secretary: bool = True

    def check(self) -> None:
        """The checks that need no database."""
        check_secretary_fields(self.name, self.model, self.prompt, self.description)
        check_params(self.params or {})
        if self.is_default and not self.is_secretary:
            raise InvalidInput(
                "an assistant users cannot pick (--no-secretary) cannot be the default"
            )


def create(conn: Any, data: NewSecretary, now: datetime) -> uuid.UUID:
    """Add a secretary (its version 1, live); with `is_default` it replaces the default."""
    data.check()
    refuse_taken_name(conn, data.name)
    params = dict(data.params or {})
    check_models(conn, data.model, params, data.name)
    if data.is_default:
        writes.clear_default(conn, now)
    return insert_secretary(
        conn,
        now,
        name=data.name,
        description=data.description,
        model=data.model,
        prompt=data.prompt,
        params=params,
        is_secretary=data.is_secretary,
        is_active=True,
        is_default=data.is_default,
    )


def insert_secretary(
    conn: Any, now: datetime, *, note: str | None = None, **fields: Any
) -> uuid.UUID:
    """Store a secretary row (`fields`: name, description, model, prompt, params,
    is_secretary, is_active, is_default) and its version 1, live; its new id. Checked
    by the caller."""
    new_id = uuid.uuid4()
    conn.execute(
        SECRETARY.insert().values(id=new_id, version=1, created_at=now, updated_at=now, **fields)
    )
    writes.add_version(conn, writes.secretary(conn, new_id), 1, "live", note, now)
    return new_id


@dataclass(frozen=True)
class Updated:
    """What `update` did: the secretary's id and name after it, whether anything changed,
    the live version's number, and the draft's number (a draft was stored)."""

    id: uuid.UUID
    name: str
    changed: bool
    version: int
    draft: int | None = None


def update_secretary(
    conn: Any,
    ref: str | uuid.UUID,
    changes: dict[str, Any],
    now: datetime,
    *,
    draft: bool = False,
    note: str | None = None,
) -> Updated:
    """Apply `changes` (name, description, model, prompt, params: None or absent means
    unchanged); `params` merge into the old ones (a None value removes a key). A change of
    the model, the prompt or the params makes a new numbered version (with `note`); with
    `draft` that version is stored, not made live (name and description apply at once)."""
    if changes.get("params") is not None:
        check_params(changes["params"])
    row = writes.secretary(conn, ref, lock=True)
    new: dict[str, Any] = {}
    for field in ("name", "description", "model", "prompt"):
        value = changes.get(field)
        if value is not None and value != getattr(row, field):
            new[field] = value
    if changes.get("params") is not None:
        merged = {**row.params, **changes["params"]}
        merged = {k: v for k, v in merged.items() if v is not None}
        if merged != row.params:
            new["params"] = merged
    if not new:
        return Updated(row.id, row.name, False, row.version)
    # Only what changes is checked: older rows that break today's rules keep working.
    check_secretary_fields(
        new.get("name"), new.get("model", row.model), new.get("prompt"), new.get("description")
    )
    if "name" in new:
        refuse_taken_name(conn, new["name"], besides=row.id)
    content: dict[str, Any] = {k: new.pop(k) for k in ("model", "prompt", "params") if k in new}
    number, fresh = row.version, None  # the live number; the new version's number
    if content:
        check_models(
            conn,
            content.get("model", row.model),
            content.get("params", row.params),
            new.get("name", row.name),
        )
        writes.ensure_live_row(conn, row, now)
        from secretaries_core.catalog.rollout_writes import next_version

        fresh = next_version(conn, row)
    conn.execute(update(SECRETARY).where(SECRETARY.c.id == row.id).values(**new, updated_at=now))
    if fresh is not None and draft:
        writes.add_version(conn, row, fresh, "draft", note, now, **content)
    elif fresh is not None:
        writes.make_live(conn, row.id, fresh, note, now, **content)
        number = fresh
    return Updated(row.id, new.get("name", row.name), True, number, fresh if draft else None)
