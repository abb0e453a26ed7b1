"""Contexts a store remembers between messages, in one bounded map.

Both fast paths keep one: the SQLite lane tags each context with its version (checked
against the database on every read), the Redis lane with the moment its TTL could run out
(and Redis tells it of any change).
"""

from __future__ import annotations

from typing import Generic, TypeVar

from secretaries_core.context.base import Message

K = TypeVar("K")
T = TypeVar("T")


class RememberedContexts(Generic[K, T]):
    """Each context's whole list of messages with a tag, `CAP` messages in all at most.

    Past the cap it is emptied: cheaper than an LRU order on every read. Every change is
    a single dict operation, so another thread may forget a context safely.
    """

    CAP = 100_000

    def __init__(self) -> None:
        self._entries: dict[K, tuple[T, list[Message]]] = {}
        self._size = 0

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def entry(self, key: K) -> tuple[T, list[Message]] | None:
        """(tag, messages) remembered for `key`, if any; the list is never changed after."""
        return self._entries.get(key)

    def put(self, key: K, tag: T, messages: list[Message]) -> None:
        """Remember `messages` as the whole of `key`, with `tag`."""
        old = self._entries.get(key)
        self._size += len(messages) - (len(old[1]) if old is not None else 0)
        if self._size > self.CAP:
            self.clear()
            self._size = len(messages)
        self._entries[key] = (tag, messages)

    def forget(self, key: K) -> None:
        """Drop one context."""
        old = self._entries.pop(key, None)
        if old is not None:
            self._size -= len(old[1])

    def clear(self) -> None:
        """Drop everything."""
        self._entries.clear()
        self._size = 0
