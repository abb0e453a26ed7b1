"""Text for people without Typer: terminal-safe strings and Rich tables.

Split from `output` so the quick reads (quick.py) print the very same tables without
loading Typer.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
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


def versions(found: Iterable[Any]) -> None:
    """The table of `versions SEC` (VersionInfo rows)."""
    from secretaries_core.tools.spec import tools_param

    table(
        None,
        ["version", "state", "model", "tools", "created", "note"],
        (
            (
                v.version,
                v.state,
                v.model,
                ", ".join(tools_param(dict(v.params))),
                v.created_at.isoformat(timespec="seconds"),
                v.note or "",
            )
            for v in found
        ),
    )


def users(rows: Iterable[tuple[int, str | None, datetime, str | None]]) -> None:
    """The table of `users list`: (Telegram id, username, registered, secretary) rows."""
    table(
        None,
        ["telegram_id", "username", "secretary", "registered"],
        ((t, u and f"@{u}", s or "(default)", at.date()) for t, u, at, s in rows),
    )


def history(rows: Iterable[tuple[str, bool, datetime, datetime]]) -> None:
    """The table of `history`: (secretary, active, since, last change) rows."""
    table(
        None,
        ["since", "until", "secretary", "active"],
        (
            (
                since.isoformat(timespec="seconds"),
                "" if active else changed.isoformat(timespec="seconds"),
                name,
                yes_no(active),
            )
            for name, active, since, changed in rows
        ),
    )


def tokens(found: Sequence[Any]) -> None:
    """The table of `tokens list` (TokenInfo rows)."""
    table(
        f"{len(found)} token(s)",
        ["name", "scope", "created"],
        ((t.name, t.scope, f"{t.created_at:%Y-%m-%d %H:%M}") for t in found),
    )


def tools(found: Sequence[Any]) -> None:
    """The table of `tools list` (ToolSpec rows)."""
    table(
        f"{len(found)} tool(s)",
        ["name", "kind", "where", "timeout (s)", "confirm", "read-only"],
        (
            (
                t.name,
                t.kind,
                t.as_dict()["url"] or t.command or "",
                f"{t.timeout:g}",
                "yes" if t.confirm else "",
                "yes" if t.read_only else "",
            )
            for t in found
        ),
    )


def providers(rows: Iterable[Mapping[str, Any]]) -> None:
    """The table of `providers list` (rows in the JSON documents' shape)."""
    table(
        None,
        ["name", "base URL", "key from"],
        ((r["name"], r["base_url"], r["api_key_env"] or "") for r in rows),
    )


def diff_lines(doc: Mapping[str, Any]) -> list[str]:
    """What `diff SEC V1 V2` says, line by line (a `diff --json` document)."""
    lines = []
    if doc["model"]:
        lines.append(f"model: {doc['model']['from']} -> {doc['model']['to']}")
    for key, change in doc["params"].items():
        lines.append(f"param {key}: {change['from']!r} -> {change['to']!r}")
    lines.append(doc["prompt_diff"] or "(the prompt is the same)")
    return lines


def tool(doc: Mapping[str, Any]) -> None:
    """The tables of `tools show` (a `tools show --json` document)."""
    table(
        f"tool {doc['name']}",
        ["field", "value"],
        ((k, v if isinstance(v, str) else repr(v)) for k, v in doc.items() if k != "tools"),
    )
    if doc["kind"] == "mcp":
        table(
            "its tools",
            ["name", "description"],
            ((t["name"], t["description"]) for t in doc["tools"]),
        )


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


def error(message: str, details: Iterable[str] = ()) -> None:
    """The one `Error:` line on stderr, then any details (bad rows, ...) one per line."""
    sys.stderr.write(f"Error: {for_terminal(message)}\n")
    for line in details:
        sys.stderr.write(f"  {for_terminal(line)}\n")
    sys.stderr.flush()


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


def verbatim(text: str) -> None:
    """`text` on stdout exactly as it is (stdout is a pipe or a file, not a terminal): no
    terminal-safe rewriting, the text must arrive unchanged."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def say(line: str) -> None:
    """A line for people on stdout, made terminal-safe (what `output.say` prints)."""
    sys.stdout.write(for_terminal(line) + "\n")


def rollout_status(doc: Mapping[str, Any]) -> None:
    """What `rollout status SEC` shows (a `rollout status --json` document)."""
    state, live, candidate = doc["state"], doc["live"]["version"], doc["candidate"]["version"]
    names = ("live", "candidate")
    if state == "running":
        say(f"{doc['secretary']}: rollout running at {doc['percent']}%")
    elif state == "promoted":
        say(
            f"{doc['secretary']}: promoted: version {candidate} is live for everyone "
            f"(was version {live}); the counts below are over the rollout"
        )
        names = ("before", "promoted")
    else:
        say(
            f"{doc['secretary']}: rollout {state.replace('_', ' ')}: everyone is on version "
            f"{live}; the counts below are over the rollout"
        )
        names = ("live", state.replace("_", " "))
    judged = bool(doc.get("judge"))
    columns = ["side", "version", "messages", "errors", "error rate", "likes", "dislikes"]
    table(
        None,
        columns + (["judged", "judge fail rate"] if judged else []),
        (
            (
                name,
                side["version"],
                side["messages"],
                side["errors"],
                side["error_rate"],
                side["likes"],
                side["dislikes"],
                *((side["judged"], side["judge_fail_rate"]) if judged else ()),
            )
            for name, side in ((names[0], doc["live"]), (names[1], doc["candidate"]))
        ),
    )
    if doc.get("reason"):
        say(f"ended: {doc['reason']}")


# -- what a write says (the Typer commands and the quick writes print the same lines) -----


def assigned_line(user: object, secretary: str, previous: str | None, changed: bool) -> str:
    """What `assign` says."""
    if not changed:
        return f"Nothing changed: user {user} already has {secretary}."
    was = f" (was {previous})" if previous else ""
    return f"User {user} now has {secretary}{was}."


def pinned_line(user: object, version: int, sec: str) -> str:
    """What `pin` says."""
    return f"{user} now gets version {version} of {sec}."


def unpinned_line(user: object, sec: str, removed: bool) -> str:
    """What `unpin` says."""
    return f"{user} unpinned from {sec}." if removed else f"{user} had no pin on {sec}."


def rolled_back_line(name: str, to: int, number: int) -> str:
    """What `rollback` says."""
    return f"{name} now serves the content of version {to} as version {number}."


def change_lines(name: str, did: str, changed: bool, moved_users: int) -> list[str]:
    """What `set-default`, `activate` and `deactivate` say."""
    if not changed and not moved_users:
        return [f"Nothing changed: {name} was already {did}."]
    said = [f"{name} {did}."] if changed else []
    if moved_users:
        said.append(f"Moved {moved_users} user(s) off {name}.")
    return said
