"""`list`, `show`, `current` and `versions` answered without loading Typer, the ORM or pydantic.

The three reads an operator (or a script in a loop) runs most are one or two queries;
starting the whole CLI for them cost 0.6 s against 0.24 s for `import sqlalchemy`. When
the command line is exactly one of them — global `--database-url`/`--context-url`, the
command, its argument, `--json`/`--all` — it is answered here through
`secretaries_core.catalog.reads` and printed exactly as the Typer command prints it (the
tests compare both, byte for byte). Anything else (help, another option, a typo) and any
read that cannot answer (an unknown name, an error of any kind) goes to the Typer app,
which then says what the contract says: every refusal has one implementation.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

COMMANDS = {
    "list": ({"--json", "--all"}, 0),
    "show": ({"--json"}, 1),
    "current": ({"--json"}, 1),
    "versions": ({"--json"}, 1),
}
GLOBAL_OPTIONS = {"--database-url": "database_url", "--context-url": "context_url"}


def parse(argv: Sequence[str]) -> tuple[dict[str, str], str, list[str], set[str]] | None:
    """(global options, command, arguments, flags) when argv is a quick read, else None."""
    options: dict[str, str] = {}
    rest = list(argv)
    while rest and rest[0].startswith("--"):
        name, eq, value = rest.pop(0).partition("=")
        if name not in GLOBAL_OPTIONS or GLOBAL_OPTIONS[name] in options:
            return None
        if not eq:
            if not rest:
                return None
            value = rest.pop(0)
        options[GLOBAL_OPTIONS[name]] = value
    if not rest or rest[0] not in COMMANDS:
        return None
    command, words = rest[0], rest[1:]
    allowed, arity = COMMANDS[command]
    flags = {w for w in words if w.startswith("-")}
    arguments = [w for w in words if not w.startswith("-")]
    if not flags <= allowed or len(flags) != len(words) - len(arguments):
        return None
    if len(arguments) != arity:
        return None
    return options, command, arguments, flags


def run(argv: Sequence[str]) -> int | None:
    """Answer argv if it is a quick read: the exit code, or None for the Typer app."""
    parsed = parse(argv)
    if parsed is None:
        return None
    options, command, arguments, flags = parsed
    try:
        text = _answer(options, command, arguments, flags)
    except Exception:  # the Typer app runs it again and reports the error
        return None
    if text is not None:
        sys.stdout.write(text)
        sys.stdout.flush()
    return 0


def _answer(
    options: dict[str, str], command: str, arguments: list[str], flags: set[str]
) -> str | None:
    """The output as text (None when it was drawn as a table already); raises to give up."""
    from secretaries_core.catalog import reads
    from secretaries_core.config import Settings
    from secretaries_core.plumbing.schema import open_database

    settings = Settings.load(
        database_url=options.get("database_url"), context_url=options.get("context_url")
    )
    engine = open_database(settings)
    user: object = None
    try:
        with engine.connect() as conn:
            if command == "list":
                found: Any = reads.list_secretaries(conn, include_inactive="--all" in flags)
            elif command == "show":
                found = reads.secretary_detail(conn, arguments[0])
            elif command == "versions":
                found = reads.versions(conn, arguments[0])
            else:
                from secretaries_core.catalog.refs import parse_user_ref

                user = parse_user_ref(arguments[0])
                found = reads.current(conn, user)
    finally:
        engine.dispose()
    if "--json" in flags:
        document = found.document if command == "current" else found
        if command == "versions":
            document = [v.doc() for v in found]
        return json.dumps(document, ensure_ascii=False) + "\n"
    return _for_people(command, found, user)


def _for_people(command: str, found: Any, user: object) -> str | None:
    from secretaries_cli import render

    if command == "current":
        doc = found.document
        line = (
            f"{user}: {doc['secretary']['name']} ({doc['source']}), "
            f"version {doc['version']} ({doc['version_source']}), model {found.model}"
        )
        return render.for_terminal(line) + "\n"
    if command == "versions":
        from secretaries_core.tools.spec import tools_param

        render.table(
            None,
            ["version", "state", "model", "tools", "created", "note"],
            [
                (
                    v.version,
                    v.state,
                    v.model,
                    ", ".join(tools_param(dict(v.params))),
                    v.created_at.isoformat(timespec="seconds"),
                    v.note or "",
                )
                for v in found
            ],
        )
        return None
    if command == "list":
        if not found:
            return "No secretaries yet; add one with `secretaries create`.\n"
        render.secretaries(found)
        return None
    # Everything is computed before the table is drawn: nothing may fail after it.
    created = datetime.fromisoformat(found["created_at"]).isoformat()
    updated = datetime.fromisoformat(found["updated_at"]).isoformat()
    lines = [
        f"id: {found['id']}",
        f"params: {found['params']}",
        f"created: {created}  updated: {updated}",
        "prompt:",
        found["prompt"],
    ]
    text = "".join(render.for_terminal(line) + "\n" for line in lines)
    render.secretaries([found])
    return text
