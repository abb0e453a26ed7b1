"""Printing: JSON documents for programs, Rich tables for people, `Error:` lines on stderr."""

from __future__ import annotations

import sys

import typer

from secretaries_cli.render import (
    emit_json,
    error,
    for_terminal,
    progress_bar,
    table,
    verbatim,
    yes_no,
)

# Kept here: commands print through `output`.
__all__ = ["emit_json", "error", "for_terminal", "progress_bar", "table", "verbatim", "yes_no"]


def say(message: str) -> None:
    """A plain line for people on stdout (never used with --json)."""
    typer.echo(for_terminal(message))


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
