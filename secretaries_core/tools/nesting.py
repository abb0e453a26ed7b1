"""Assistants asking assistants: the graph of who can ask whom, and its cycles.

An edge A → B exists when a version of A (live, candidate or draft) names a tool of kind
`assistant` that asks B. A cycle (A asks B, B asks A) would nest until the depth limit on
every message, so it is refused when any assistant's content is created, updated or
applied, naming the whole cycle.
"""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy import select

from secretaries_core.errors import InvalidInput

ACTIVE_STATES = ("live", "candidate", "draft")


def _asks(params: Any, tools: dict[str, str]) -> dict[str, str]:
    """Callee name → the tool that asks it, for one version's params."""
    from secretaries_core.tools.spec import tools_param

    if not isinstance(params, dict):
        return {}
    return {tools[t]: t for t in tools_param(params) if t in tools}


def refuse_cycles(session: Any, name: str, params: Any) -> None:
    """`InvalidInput` naming the cycle when `name` with `params` could ask itself
    (`session`: a Connection or an ORM Session)."""
    from secretaries_core.catalog.reads import SECRETARY as assistants
    from secretaries_core.catalog.reads import VERSION as VERSION_TABLE
    from secretaries_core.tools.table import TOOL_TABLE

    rows = session.execute(
        select(TOOL_TABLE.c.name, TOOL_TABLE.c.config).where(TOOL_TABLE.c.kind == "assistant")
    )
    tools = {row.name: str((row.config or {}).get("assistant")) for row in rows}
    if not tools:
        return
    names = {r.id: r.name for r in session.execute(select(assistants.c.id, assistants.c.name))}
    edges: dict[str, dict[str, str]] = {}
    for row in session.execute(select(assistants.c.name, assistants.c.params)):
        edges.setdefault(row.name, {}).update(_asks(row.params, tools))
    versions = select(VERSION_TABLE.c.secretary_id, VERSION_TABLE.c.params).where(
        VERSION_TABLE.c.state.in_(ACTIVE_STATES)
    )
    for row in session.execute(versions):
        if row.secretary_id in names:
            edges.setdefault(names[row.secretary_id], {}).update(_asks(row.params, tools))
    edges.setdefault(name, {}).update(_asks(params, tools))
    path = _path_back(name, edges)
    if path is not None:
        steps = " → ".join(f"{a} (tool {edges[a][b]})" for a, b in itertools.pairwise(path))
        raise InvalidInput(f"assistants would ask each other in a cycle: {steps} → {name}")


def _path_back(start: str, edges: dict[str, dict[str, str]]) -> list[str] | None:
    """A path start → … → start, as the list of its nodes (start first and last)."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for callee in edges.get(node, {}):
            if callee == start:
                return [*path, start]
            if callee not in seen:
                seen.add(callee)
                stack.append((callee, [*path, callee]))
    return None
