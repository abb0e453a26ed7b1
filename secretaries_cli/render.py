"""Text for people without Typer: terminal-safe strings and Rich tables.

Split from `output` so the quick reads (quick.py) print the very same tables without
loading Typer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_CONTROL = [*range(0x20), 0x7F, *range(0x80, 0xA0)]
_TERMINAL_UNSAFE = {c: "\ufffd" for c in _CONTROL if c not in (9, 10)}


def for_terminal(text: str) -> str:
    """Text with control characters (ESC sequences included) made visible and harmless."""
    return text.translate(_TERMINAL_UNSAFE)


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Render rows as a Rich table on stdout.

    Every cell and the title are literal text: stored data (chat messages, descriptions)
    may hold `[...]` that Rich would read as markup, or ESC sequences for the terminal.
    """
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    grid = Table(title=Text(for_terminal(title)) if title else None, show_lines=False)
    for column in columns:
        grid.add_column(Text(column), overflow="fold")
    for row in rows:
        grid.add_row(*(Text(for_terminal("" if cell is None else str(cell))) for cell in row))
    Console().print(grid)


def yes_no(flag: bool) -> str:
    """A boolean for a table cell."""
    return "yes" if flag else "no"


def secretaries(rows: Iterable[Mapping[str, Any]]) -> None:
    """The catalog table of `list` and `show` (rows in the JSON documents' shape)."""
    table(
        None,
        ["name", "model", "default", "active", "version", "users", "description"],
        (
            (
                r["name"] if r.get("is_secretary", True) else f"{r['name']} (assistant)",
                r["model"],
                yes_no(r["is_default"]),
                yes_no(r["is_active"]),
                r["version"],
                r["users"],
                r["description"],
            )
            for r in rows
        ),
    )
