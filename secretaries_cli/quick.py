"""The hottest reads and writes answered without loading Typer, the ORM or pydantic.

The reads an operator (or a script in a loop) runs most are one or two queries; starting
the whole CLI for them cost 0.6 s against 0.24 s for `import sqlalchemy`. When the
command line is exactly one of them (`COMMANDS`: `list`, `show`, `current`, `versions`,
`diff`, `rollout status`, `history`, `users list`, `tools show`, and the lists of tools,
tokens and providers — global `--database-url`/`--context-url`, the command, its
arguments, its flags and options), it is answered here through
`secretaries_core.catalog.reads` (and the Core-only tool, token and provider tables) and
printed exactly as the Typer command prints it (the tests compare both, byte for byte).
The everyday writes (`WRITES`: `assign`, `pin`, `unpin`, `set-default`, `activate`,
`deactivate`, `rollback`, and `ROLLOUT_WRITES`: `rollout start|set|promote|abort`) run
`secretaries_core.catalog.writes` (and `rollout_writes`) in one write transaction — the
functions the registry runs — and give up before their commit, never after it.
`PLAIN` commands (`contexts stats|show|purge`, `delete --yes`, `users delete --yes`,
`tools call`, `usage`, `export`, `plan`, `apply --yes` without eval suites, and `chat`,
`eval`, `replay` — the message path on the `ServingCatalog`, without the ORM) run the
bodies in plain.py, which the Typer commands run too; once one runs it reports its own
failures through session.py, as the Typer app would (erasing and deleting are not one
transaction, so they are never run a second time).
Anything else (help, another option, a typo) and any read that cannot answer (an unknown
name, an error of any kind) goes to the Typer app, which then says what the contract
says: every refusal has one implementation.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from secretaries_core.config import Settings

# command words -> (flags, options taking a value, number of arguments)
COMMANDS: dict[str, tuple[set[str], set[str], int]] = {
    "list": ({"--json", "--all"}, set(), 0),
    "show": ({"--json"}, set(), 1),
    "current": ({"--json"}, set(), 1),
    "versions": ({"--json"}, set(), 1),
    "history": ({"--json"}, {"--limit", "--offset"}, 1),
    "users list": ({"--json"}, {"--secretary", "--limit", "--offset"}, 0),
    "diff": ({"--json"}, set(), 3),
    "rollout status": ({"--json"}, set(), 1),
    "tools list": ({"--json"}, set(), 0),
    "tools show": ({"--json"}, set(), 1),
    "tokens list": ({"--json"}, set(), 0),
    "providers list": ({"--json"}, set(), 0),
    # writes: one transaction on Core (`catalog.writes`)
    "assign": ({"--json"}, set(), 2),
    "pin": (set(), {"--version"}, 2),
    "unpin": (set(), set(), 2),
    "set-default": ({"--json"}, set(), 1),
    "activate": ({"--json"}, set(), 1),
    "deactivate": ({"--json"}, {"--reassign-to"}, 1),
    "rollback": ({"--json"}, {"--to"}, 1),
    "rollout start": (
        {"--json"},
        {"--percent", "--version", "--max-error-rate", "--max-dislike-rate", "--min-messages"},
        1,
    ),
    "rollout set": ({"--json"}, {"--percent"}, 1),
    "rollout promote": ({"--json"}, set(), 1),
    "rollout abort": ({"--json"}, set(), 1),
    # the bodies in plain.py, which report their own failures
    "contexts stats": ({"--json"}, set(), 0),
    "contexts show": ({"--json"}, {"--secretary", "--limit", "--offset"}, 1),
    "contexts purge": ({"--json", "--dry-run"}, {"--older-than", "--user", "--secretary"}, 0),
    "delete": ({"--json", "--yes"}, set(), 1),
    "users delete": ({"--json", "--yes"}, set(), 1),
    "tools call": ({"--json"}, {"--args", "--tool"}, 1),
    "export": (set(), {"--output"}, 0),
    "plan": ({"--json", "--prune"}, set(), 1),
    "apply": ({"--json", "--prune", "--yes"}, {"--canary"}, 1),
    "usage": (
        {"--json", "--by-version"},
        {"--user", "--secretary", "--since", "--limit", "--offset"},
        0,
    ),
    "chat": ({"--json", "--approve"}, set(), 2),
    "eval": ({"--json"}, {"--suite", "--version"}, 1),
    "replay": ({"--json"}, {"--version", "--users", "--judge", "--judge-model"}, 1),
}
WRITES = {"assign", "pin", "unpin", "set-default", "activate", "deactivate", "rollback"}
ROLLOUT_WRITES = {"rollout start", "rollout set", "rollout promote", "rollout abort"}
# command words -> the Typer command's function name (what Ctrl-C says is keyed by it)
PLAIN = {
    "contexts stats": "stats",
    "contexts show": "show",
    "contexts purge": "purge",
    "delete": "delete",
    "users delete": "delete",
    "tools call": "call",
    "usage": "usage",
    "export": "export",
    "plan": "plan",
    "apply": "apply",
    "chat": "chat",
    "eval": "eval_",
    "replay": "replay",
}
Output = str | Callable[[], None]
"""What a quick command prints: text, or a function drawing a table (Rich) once it is safe."""
GLOBAL_OPTIONS = {"--database-url": "database_url", "--context-url": "context_url"}


@dataclass(frozen=True)
class Read:
    """A quick read's command line, taken apart."""

    options: dict[str, str]  # the global ones, by Settings name
    command: str
    arguments: list[str]
    flags: set[str]
    values: dict[str, str]  # the command's own options with a value


def parse(argv: Sequence[str]) -> Read | None:
    """The read when argv is exactly a quick read, else None."""
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
    command = " ".join(rest[:2]) if " ".join(rest[:2]) in COMMANDS else rest[0] if rest else ""
    if command not in COMMANDS:
        return None
    flags_allowed, valued, arity = COMMANDS[command]
    words = rest[len(command.split()) :]
    flags: set[str] = set()
    values: dict[str, str] = {}
    arguments: list[str] = []
    while words:
        word = words.pop(0)
        name, eq, value = word.partition("=")
        if name in valued:
            if not eq:
                if not words or words[0].startswith("-"):
                    return None
                value = words.pop(0)
            if name in values:
                return None
            values[name] = value
        elif word in flags_allowed and word not in flags:
            flags.add(word)
        elif word.startswith("-"):
            return None
        else:
            arguments.append(word)
    if len(arguments) != arity:
        return None
    return Read(options, command, arguments, flags, values)


def run(argv: Sequence[str]) -> int | None:
    """Answer argv if it is a quick read: the exit code, or None for the Typer app."""
    read = parse(argv)
    if read is None:
        return None
    if read.command in PLAIN:
        return _run_plain(read)
    try:
        text = _answer(read)
    except Exception:  # the Typer app runs it again and reports the error
        return None
    if callable(text):
        text()
    elif text is not None:
        sys.stdout.write(text)
        sys.stdout.flush()
    return 0


def _run_plain(read: Read) -> int | None:
    """Run one of plain.py's bodies; its exit code, or None (Typer) when argv is not one
    its parsers take. Once it runs, it reports its own failures as the Typer app does:
    erasing and deleting are not one transaction, so they are never run twice."""
    try:
        job = _plain_job(read)
    except Exception:
        return None
    from secretaries_cli.plain import NotPlain
    from secretaries_cli.session import Runtime, failure_code

    rt: Runtime | None = None
    try:
        rt = Runtime(_settings(read))
        code = job(rt)
    except NotPlain:
        return None  # raised before anything was written
    except (Exception, KeyboardInterrupt) as exc:
        code = failure_code(exc, PLAIN[read.command])
        if code is None:
            raise
        return code
    finally:
        if rt is not None:
            rt.close()
    return code or 0


def _settings(read: Read) -> Settings:
    """The settings the global options (then the environment) give, as the root callback
    loads them."""
    from secretaries_core.config import Settings

    return Settings.load(
        database_url=read.options.get("database_url"),
        context_url=read.options.get("context_url"),
    )


def _parsed(read: Read, name: str, parse: Callable[[str], Any]) -> Any:
    """An option's value through `parse` (as Typer's parser takes it), None when absent;
    raises (give up) on what `parse` refuses."""
    raw = read.values.get(name)
    return None if raw is None else parse(raw)


def _plain_job(read: Read) -> Callable[[Any], int | None]:
    """The body to run with its arguments parsed as Typer parses them; raises to give up
    (a bad value, or a confirmation only the Typer app asks for)."""
    from secretaries_cli import plain
    from secretaries_core.catalog.refs import parse_user_ref

    command, arguments, values = read.command, read.arguments, read.values
    as_json = "--json" in read.flags
    if command == "contexts stats":
        return lambda rt: plain.contexts_stats(rt, as_json)
    if command == "contexts show":
        user = parse_user_ref(arguments[0])
        limit, offset = _count(read, "--limit"), _count(read, "--offset") or 0
        secretary = values.get("--secretary")
        return lambda rt: plain.contexts_show(rt, user, secretary, limit, offset, as_json)
    if command == "contexts purge":
        from secretaries_core.plumbing.durations import parse_duration

        older_than = _parsed(read, "--older-than", parse_duration)
        who = _parsed(read, "--user", parse_user_ref)
        secretary, dry_run = values.get("--secretary"), "--dry-run" in read.flags
        return lambda rt: plain.contexts_purge(rt, older_than, who, secretary, dry_run, as_json)
    if command == "usage":
        from secretaries_core.plumbing.durations import parse_duration

        since = _parsed(read, "--since", parse_duration)
        who = _parsed(read, "--user", parse_user_ref)
        limit, offset = _count(read, "--limit"), _count(read, "--offset") or 0
        secretary, by_version = values.get("--secretary"), "--by-version" in read.flags
        return lambda rt: plain.usage(rt, who, secretary, since, by_version, limit, offset, as_json)
    if command == "export":
        from pathlib import Path

        target = _parsed(read, "--output", Path)
        return lambda rt: plain.export_catalog(rt, target)
    if command in ("plan", "apply"):
        file, prune = _readable(arguments[0]), "--prune" in read.flags
        if command == "plan":
            return lambda rt: plain.plan_catalog(rt, file, prune, as_json)
        canary = _parsed(read, "--canary", _version_number)
        if (canary is not None and canary > 100) or "--yes" not in read.flags:
            raise LookupError("out of range, or a confirmation only the Typer app asks for")
        return lambda rt: plain.apply_confirmed(rt, file, prune, canary, as_json)
    if command == "chat":
        user, message = parse_user_ref(arguments[0]), arguments[1]
        approve = "--approve" in read.flags
        return lambda rt: plain.chat(rt, user, message, as_json, approve)
    if command == "eval":
        suite = _readable(values["--suite"])
        version = _parsed(read, "--version", _version_number)
        return lambda rt: plain.run_eval(rt, arguments[0], suite, version, as_json)
    if command == "replay":
        version = _parsed(read, "--version", _version_number)
        users = _parsed(read, "--users", _version_number)
        if users == 0:
            raise ValueError("--users is at least 1: the Typer app says so")
        judge, judge_model = values.get("--judge"), values.get("--judge-model")
        return lambda rt: plain.replay(
            rt, arguments[0], version, 10 if users is None else users, judge, judge_model, as_json
        )
    if command == "tools call" and "--args" in values:
        name, args, tool = arguments[0], values["--args"], values.get("--tool")
        return lambda rt: plain.call_tool(rt, name, args, tool, as_json)
    if "--yes" not in read.flags:
        raise LookupError("only the Typer app asks for confirmation")
    if command == "delete":
        return lambda rt: plain.delete_secretary(rt, arguments[0], as_json)
    if command == "users delete":
        user = parse_user_ref(arguments[0])
        return lambda rt: plain.erase_user(rt, plain.erasure_question(rt, user)[0], as_json)
    raise LookupError(command)


def _readable(name: str) -> Path:
    """A file argument as Typer's `exists, dir_okay=False, readable` takes it; raises (give
    up: the Typer app says what is wrong with it) otherwise."""
    import os
    from pathlib import Path

    file = Path(name)
    if not (file.is_file() and os.access(file, os.R_OK)):
        raise LookupError("the Typer app says what is wrong with the file")
    return file


def _count(read: Read, name: str) -> int | None:
    """A `--limit`/`--offset` value as Typer takes it; raises (give up) on anything else."""
    raw = read.values.get(name)
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()):
        raise ValueError(raw)
    return int(raw)


def _version_number(word: str) -> int:
    """A version number as Typer's int parameter takes it; raises (give up) otherwise."""
    if not (word.isascii() and word.isdigit()):
        raise ValueError(word)
    return int(word)


def _answer(read: Read) -> Output | None:
    """The output as text (None when it was drawn as a table already); raises to give up."""
    from secretaries_core.catalog import reads
    from secretaries_core.plumbing.schema import open_database

    command, arguments, flags = read.command, read.arguments, read.flags
    settings = _settings(read)
    limit, offset = _count(read, "--limit"), _count(read, "--offset") or 0
    engine = open_database(settings)
    if command in WRITES or command in ROLLOUT_WRITES:
        try:
            return _write(read, engine)
        finally:
            engine.dispose()
    user: object = None
    try:
        with engine.connect() as conn:
            if command == "list":
                found: Any = reads.list_secretaries(conn, include_inactive="--all" in flags)
            elif command == "show":
                found = reads.secretary_detail(conn, arguments[0])
            elif command == "versions":
                found = reads.versions(conn, arguments[0])
            elif command == "rollout status":
                found = reads.rollout_status(conn, arguments[0])
            elif command == "diff":
                v1, v2 = (_version_number(word) for word in arguments[1:])
                found = reads.diff(conn, arguments[0], v1, v2)
            elif command == "tools show":
                from secretaries_core.tools.registry import ToolRegistry

                spec = ToolRegistry(engine).get(arguments[0])
                if spec.kind == "mcp":
                    raise LookupError("an MCP server's tools are discovered by the Typer app")
                found = spec.as_dict()
            elif command == "tools list":
                from secretaries_core.tools.registry import ToolRegistry

                found = ToolRegistry(engine).all()
            elif command == "tokens list":
                from secretaries_core.catalog.api_tokens import ApiTokens

                found = ApiTokens(engine).list()
            elif command == "providers list":
                from secretaries_core.llm.providers_table import listing, provider_rows

                found = listing(settings.openai_base_url, provider_rows(conn))
            elif command == "users list":
                named = read.values.get("--secretary")
                sid = None if named is None else reads.secretary_id(conn, named)
                found = reads.user_page(conn, sid, limit, offset)
            else:
                from secretaries_core.catalog.refs import parse_user_ref

                user = parse_user_ref(arguments[0])
                if command == "history":
                    end = None if limit is None else offset + limit
                    found = reads.link_history(conn, reads.user_row_id(conn, user))[offset:end]
                else:
                    found = reads.current(conn, user)
    finally:
        engine.dispose()
    if "--json" in flags:
        document: Any = found
        if command == "current":
            document = found.document
        elif command == "versions":
            document = [v.doc() for v in found]
        elif command == "users list":
            document = reads.users_page_documents(found)
        elif command == "history":
            document = reads.history_documents(found)
        elif command in ("tools list", "tokens list"):
            document = [t.as_dict() for t in found]
        return json.dumps(document, ensure_ascii=False) + "\n"
    return _for_people(command, found, user)


def _write(read: Read, engine: Any) -> Output:
    """Run a quick write in one transaction; its output. Raises (nothing committed) to
    give up: the Typer app then runs it through the registry, on the same Core write."""
    from secretaries_core.plumbing.db import transaction
    from secretaries_core.plumbing.timeutil import utcnow

    # What is printed is made inside the transaction and printed after its commit: nothing
    # may fail after the commit (the Typer app would run the write a second time).
    with transaction(engine, write=True) as conn:
        if read.command in ROLLOUT_WRITES:
            _rollout_write(conn, read, utcnow())
            return _rollout_status(conn, read)
        return _catalog_write(conn, read, utcnow())


def _rollout_status(conn: Any, read: Read) -> Output:
    """The rollout's status after a rollout write: JSON text, or the table drawn later."""
    from secretaries_core.catalog import reads

    doc = reads.rollout_status(conn, read.arguments[0])
    if "--json" in read.flags:
        return json.dumps(doc, ensure_ascii=False) + "\n"
    return lambda: _draw_rollout(doc)  # drawn once the transaction has committed


def _draw_rollout(doc: dict[str, Any]) -> None:
    from secretaries_cli import render

    render.rollout_status(doc)


def _catalog_write(conn: Any, read: Read, now: datetime) -> str:
    """assign, pin, unpin, set-default, activate, deactivate, rollback: the text to print."""
    from secretaries_cli import render
    from secretaries_core.catalog import reads, writes
    from secretaries_core.catalog.refs import parse_user_ref

    command, arguments = read.command, read.arguments
    as_json = "--json" in read.flags
    if command == "rollback":
        from secretaries_core.catalog.rollout_writes import rollback

        to = _version_number(read.values["--to"])
        sec_id, name, number = rollback(conn, arguments[0], to, now)
        if as_json:
            return json.dumps(reads.secretary_detail(conn, str(sec_id)), ensure_ascii=False) + "\n"
        return _lines(render.rolled_back_line(name, to, number))
    if command in ("assign", "pin", "unpin"):
        user, sec = parse_user_ref(arguments[0]), arguments[1]
        if command == "pin":
            version = _version_number(read.values["--version"])
            writes.pin(conn, user, sec, version, now)
            return _lines(render.pinned_line(user, version, sec))
        if command == "unpin":
            _, removed = writes.unpin(conn, user, sec)
            return _lines(render.unpinned_line(user, sec, removed))
        from secretaries_core.plumbing.timeutil import utcnow

        # The clock is read under the lock (see writes.assign), not at `now`.
        assigned = writes.assign(conn, user, sec, utcnow)
        if as_json:
            return json.dumps(assigned.doc(), ensure_ascii=False) + "\n"
        return _lines(
            render.assigned_line(user, assigned.secretary, assigned.previous, assigned.changed)
        )
    if command == "set-default":
        change, did = writes.set_default(conn, arguments[0], now), "the default"
    elif command == "activate":
        change, did = writes.activate(conn, arguments[0], now), "activated"
    elif command == "deactivate":
        to_sec = read.values.get("--reassign-to")
        change, did = writes.deactivate(conn, arguments[0], to_sec, now), "deactivated"
    else:
        raise LookupError(command)
    if as_json:
        return json.dumps(reads.secretary_detail(conn, str(change.id)), ensure_ascii=False) + "\n"
    return _lines(*render.change_lines(change.name, did, change.changed, change.moved_users))


def _rollout_write(conn: Any, read: Read, now: datetime) -> None:
    """One of `rollout start|set|promote|abort`, options taken as Typer takes them."""
    from secretaries_core.catalog import rollout_writes

    sec, values = read.arguments[0], read.values
    if read.command == "rollout promote":
        rollout_writes.rollout_promote(conn, sec, now)
    elif read.command == "rollout abort":
        rollout_writes.rollout_abort(conn, sec, now)
    elif read.command == "rollout set":
        rollout_writes.rollout_set(conn, sec, _version_number(values["--percent"]))
    else:
        version = values.get("--version")
        rollout_writes.rollout_start(
            conn,
            sec,
            now,
            percent=_version_number(values["--percent"]),
            version=None if version is None else _version_number(version),
            max_error_rate=_rate(values.get("--max-error-rate")),
            max_dislike_rate=_rate(values.get("--max-dislike-rate")),
            min_messages=_version_number(values.get("--min-messages", "50")),
        )


def _rate(word: str | None) -> float | None:
    """A rate as Typer's float parameter takes it, in its plain spellings; raises (give
    up) on anything else."""
    if word is None:
        return None
    if not RATE_RE.fullmatch(word):
        raise ValueError(word)
    return float(word)


RATE_RE = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")


def _lines(*lines: str) -> str:
    """Lines as `output.say` prints them."""
    from secretaries_cli import render

    return "".join(render.for_terminal(line) + "\n" for line in lines)


def _for_people(command: str, found: Any, user: object) -> str | None:
    from secretaries_cli import render

    if command == "current":
        doc = found.document
        line = (
            f"{user}: {doc['secretary']['name']} ({doc['source']}), "
            f"version {doc['version']} ({doc['version_source']}), model {found.model}"
        )
        return render.for_terminal(line) + "\n"
    # Drawn as the Typer command draws it, from the same document.
    drawers: dict[str, Callable[[Any], None]] = {
        "users list": render.users,
        "rollout status": render.rollout_status,
        "tools show": render.tool,
        "tools list": render.tools,
        "tokens list": render.tokens,
        "providers list": render.providers,
        "versions": render.versions,
    }
    if command in drawers:
        drawers[command](found)
        return None
    if command == "diff":
        return "".join(render.for_terminal(line) + "\n" for line in render.diff_lines(found))
    if command == "history":
        render.history((name, active, since, changed) for _s, name, active, since, changed in found)
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
