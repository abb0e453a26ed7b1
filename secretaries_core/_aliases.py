"""Old module paths, kept working: `secretaries_core.models` is `secretaries_core.catalog.models`.

The library was laid out by concern (catalog/, conversation/, plumbing/); code written
against the flat layout still imports. An alias is the very same module object, so
classes, isinstance checks and monkeypatching behave as before. Nothing is imported until
an old path is.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any, cast

MOVED = {
    "models": "catalog.models",
    "schemas": "catalog.schemas",
    "linksql": "catalog.linksql",
    "refs": "catalog.refs",
    "users_csv": "catalog.users_csv",
    "admin": "catalog.admin",
    "registry": "catalog.registry",
    "text": "conversation.text",
    "ordering": "conversation.ordering",
    "budget": "conversation.budget",
    "summaries": "conversation.summaries",
    "instances": "conversation.instances",
    "resolution_cache": "conversation.resolution_cache",
    "tokens": "conversation.tokens",
    "frontdesk": "conversation.frontdesk",
    "db": "plumbing.db",
    "schema": "plumbing.schema",
    "loops": "plumbing.loops",
    "hops": "plumbing.hops",
    "metrics": "plumbing.metrics",
    "timeutil": "plumbing.timeutil",
    "durations": "plumbing.durations",
}
PACKAGE = "secretaries_core"


def new_name(old: str) -> str | None:
    """The current module path of an old one (also for submodules of a moved package)."""
    if not old.startswith(PACKAGE + "."):
        return None
    rest = old[len(PACKAGE) + 1 :]
    head, dot, tail = rest.partition(".")
    moved = MOVED.get(head)
    if moved is None:
        return None
    return f"{PACKAGE}.{moved}{dot}{tail}"


# Plain classes, not importlib.abc's: that module pulls in importlib.resources (~15 ms of
# every start-up), and the import system only needs the methods.
class _AliasLoader:
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module was executed under its new name."""


class _AliasFinder:
    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        new = new_name(fullname)
        if new is None:
            return None
        found = importlib.util.find_spec(new)
        if found is None:
            return None
        return ModuleSpec(
            fullname,
            cast(Any, _AliasLoader(new)),  # a loader by its methods (see above)
            is_package=found.submodule_search_locations is not None,
        )


def install() -> None:
    """Put the finder in front of the import system once."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())
