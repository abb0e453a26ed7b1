"""The registered tools: add, list, get, remove (refused while a secretary uses the tool)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select

from secretaries_core.errors import Conflict, NotFound
from secretaries_core.plumbing.db import transaction
from secretaries_core.plumbing.timeutil import utcnow
from secretaries_core.tools.spec import ToolSpec, tools_param
from secretaries_core.tools.table import TOOL_TABLE


class ToolRegistry:
    """Tools in the catalog's database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, spec: ToolSpec) -> ToolSpec:
        """Register `spec` under its name; `Conflict` when the name is taken."""
        spec = spec.validated()
        stamped = ToolSpec(**{**spec.__dict__, "created_at": utcnow()})
        with transaction(self.engine, write=True) as conn:
            if spec.kind == "assistant":
                from secretaries_core.catalog.reads import SECRETARY

                callee = conn.execute(
                    select(SECRETARY.c.id).where(SECRETARY.c.name == spec.assistant)
                ).first()
                if callee is None:
                    raise NotFound(
                        f"no assistant {spec.assistant!r}; create it first",
                        hint=" (`secretaries create NAME … --no-secretary`)",
                    )
            found = conn.execute(select(TOOL_TABLE.c.name).where(TOOL_TABLE.c.name == spec.name))
            if found.first() is not None:
                raise Conflict(
                    f"a tool named {spec.name!r} exists: remove it first, or pick another name"
                )
            conn.execute(
                TOOL_TABLE.insert().values(
                    name=spec.name,
                    kind=spec.kind,
                    config=spec.config(),
                    timeout=spec.timeout,
                    confirm=spec.confirm,
                    read_only=spec.read_only,
                    created_at=stamped.created_at,
                )
            )
        return stamped

    def all(self) -> list[ToolSpec]:
        """Every tool, by name."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(TOOL_TABLE).order_by(TOOL_TABLE.c.name)).all()
        return [_spec(row._mapping) for row in rows]

    def get(self, name: str) -> ToolSpec:
        """The tool named `name`; `NotFound` says how to list them."""
        with self.engine.connect() as conn:
            row = conn.execute(select(TOOL_TABLE).where(TOOL_TABLE.c.name == name)).first()
        if row is None:
            raise NotFound(f"no tool named {name[:70]!r} (see: secretaries tools list)")
        return _spec(row._mapping)

    def users_of(self, name: str) -> list[str]:
        """`secretary vN` for every version of every assistant whose params name the tool."""
        # The catalog's tables through reads' Core views: no ORM loaded for `tools remove`.
        from secretaries_core.catalog.reads import SECRETARY, VERSION

        a, v = SECRETARY.c, VERSION.c
        found: set[str] = set()
        with self.engine.connect() as conn:
            for sec, version, params in conn.execute(select(a.name, a.version, a.params)):
                if name in tools_param(params):
                    found.add(f"{sec} v{version}")
            query = select(a.name, v.version, v.params).join(VERSION, v.secretary_id == a.id)
            for sec, version, params in conn.execute(query):
                if name in tools_param(params):
                    found.add(f"{sec} v{version}")
        return sorted(found)

    def remove(self, name: str) -> None:
        """Delete the tool; `Conflict` naming the versions that still use it."""
        self.get(name)
        using = self.users_of(name)
        if using:
            raise Conflict(
                f"tool {name!r} is used by {', '.join(using)}: take it out of their tools first"
            )
        with transaction(self.engine, write=True) as conn:
            conn.execute(TOOL_TABLE.delete().where(TOOL_TABLE.c.name == name))


def _spec(row: Any) -> ToolSpec:
    config = dict(row["config"] or {})
    return ToolSpec(
        name=row["name"],
        kind=row["kind"],
        url=config.get("url"),
        command=config.get("command"),
        description=config.get("description") or "",
        schema=config.get("schema"),
        headers=dict(config.get("headers") or {}),
        secret_env=config.get("secret_env"),
        allow=tuple(config.get("allow") or ()),
        assistant=config.get("assistant"),
        history=config.get("history") or "none",
        timeout=float(row["timeout"]),
        timeout_set=bool(config.get("timeout_set", True)),
        confirm=bool(row["confirm"]),
        read_only=bool(row["read_only"]),
        created_at=row["created_at"],
    )
