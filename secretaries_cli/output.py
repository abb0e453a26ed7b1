"""Printing: JSON documents for programs, Rich tables for people, `Error:` lines on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import typer


def emit_json(data: Any) -> None:
    """Print exactly one JSON document on stdout: a pydantic model, a list of them, or a dict."""
    if hasattr(data, "model_dump"):
        payload: Any = data.model_dump(mode="json")
    elif isinstance(data, dict):
        payload = data
    else:
        payload = [
            item.model_dump(mode="json") if hasattr(item, "model_dump") else item for item in data
        ]
    sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")


_CONTROL = [*range(0x20), 0x7F, *range(0x80, 0xA0)]
_TERMINAL_UNSAFE = {c: "\ufffd" for c in _CONTROL if c not in (9, 10)}


def for_terminal(text: str) -> str:
    """Text with control characters (ESC sequences included) made visible and harmless."""
    return text.translate(_TERMINAL_UNSAFE)


def stream_text(pieces: Iterable[str]) -> None:
    """Write pieces to stdout as they come, flushed, then end the line."""
    for piece in pieces:
        sys.stdout.write(for_terminal(piece))
        sys.stdout.flush()
    sys.stdout.write("\n")


def say(message: str) -> None:
    """A plain line for people on stdout (never used with --json)."""
    typer.echo(for_terminal(message))


def verbatim(text: str) -> None:
    """`text` on stdout exactly as it is (stdout is a pipe or a file, not a terminal).

    Not `typer.echo`: off a terminal it strips ESC sequences, and the text must arrive
    unchanged.
    """
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def error(message: str, details: Iterable[str] = ()) -> None:
    """The one `Error:` line on stderr, then any details (bad rows, ...) one per line."""
    typer.echo(f"Error: {for_terminal(message)}", err=True)
    for line in details:
        typer.echo(f"  {for_terminal(line)}", err=True)


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


@contextmanager
def progress_bar(label: str, *, enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A `progress(done, total)` callback drawing a Rich bar, or None when not on a terminal."""
    if not enabled or not sys.stdout.isatty():
        yield None
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def confirmed(question: str, *, yes: bool) -> bool:
    """True with `--yes`; on a terminal ask `question`; otherwise (a script) refuse.

    Scripts must say `--yes`: a destructive command never proceeds on a guess.
    """
    if yes:
        return True
    if not sys.stdin.isatty():
        return False
    return typer.confirm(question, default=False)


def yes_no(flag: bool) -> str:
    """A boolean for a table cell."""
    return "yes" if flag else "no"


def service_logging() -> None:
    """Logs of long-running commands (bot, worker): ours at INFO, HTTP clients' per-request
    lines only from WARNING on (one line per model call would drown everything else)."""
    import logging

    from secretaries_core.redact import ScrubFilter

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # On the handlers, so records of every logger (aiogram, uvicorn, ours) are scrubbed.
    for handler in logging.getLogger().handlers:
        handler.addFilter(ScrubFilter())
    for noisy in ("httpx", "httpx2", "openai", "aiohttp.access", "aiogram.event"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
