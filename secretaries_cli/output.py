"""Printing: JSON documents for programs, Rich tables for people, `Error:` lines on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import typer

from secretaries_cli.render import for_terminal, table, yes_no

__all__ = ["for_terminal", "table", "yes_no"]  # kept here: commands print through `output`


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
