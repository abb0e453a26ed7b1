"""Printing: JSON documents for programs, Rich tables for people, `Error:` lines on stderr."""

from __future__ import annotations

import sys
from collections.abc import Iterable

import typer

from secretaries_cli.render import emit_json, error, for_terminal, progress_bar, table, yes_no

# Kept here: commands print through `output`.
__all__ = ["emit_json", "error", "for_terminal", "progress_bar", "table", "yes_no"]


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
