"""Values made once per process and looked up after: the same histories come back on every
message of their user (stored rows, stored texts, token counts, encoded messages)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def each_once(memory: dict[K, V], items: Iterable[K], make: Callable[[K], V], cap: int) -> list[V]:
    """`make(item)` for each of `items`, each made once: `memory` keeps what was made.

    Emptied when it holds more than `cap`: cheaper than an LRU order on every hit, and a
    plain dict's get/set are safe from several threads.
    """
    if len(memory) > cap:
        memory.clear()
    out = []
    for item in items:
        value = memory.get(item)
        if value is None:
            value = memory[item] = make(item)
        out.append(value)
    return out
