"""Command bodies that need neither Typer nor pydantic, once their arguments are parsed.

The Typer commands call them after Typer has parsed (and asked for confirmation), and
the quick path (quick.py) calls the same functions when the command line is one it takes
apart itself: what is printed, and every failure, has one implementation.
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from secretaries_cli import render
from secretaries_core.errors import InvalidInput, SecretariesError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from secretaries_cli.session import Runtime
    from secretaries_core.catalog.refs import UserRef
    from secretaries_core.orchestrator import Orchestrator, ReplyStream


class NotPlain(Exception):
    """Raised before anything is written: this command line needs the Typer app."""


def contexts_stats(rt: Runtime, as_json: bool) -> None:
    """`contexts stats`."""
    from secretaries_core.catalog import admin

    found = admin.context_stats(rt.engine(), rt.contexts())
    if as_json:
        render.emit_json(found.doc())
        return
    render.table(
        f"{found.contexts} context(s), {found.messages} message(s)",
        ["secretary", "contexts", "messages"],
        ((name, c.contexts, c.messages) for name, c in found.by_secretary.items()),
    )


def contexts_show(
    rt: Runtime,
    user: UserRef,
    secretary: str | None,
    limit: int | None,
    offset: int,
    as_json: bool,
) -> None:
    """`contexts show USER`: each context's messages from `offset`, at most `limit`."""
    from dataclasses import replace

    from secretaries_core.catalog import admin

    found = admin.user_contexts(rt.engine(), rt.contexts(), user, secretary)
    end = None if limit is None else offset + limit
    contexts = [replace(c, messages=c.messages[offset:end]) for c in found.contexts]
    if as_json:
        render.emit_json(replace(found, contexts=contexts).doc())
        return
    if not contexts:
        render.say(f"No stored context for {user}.")
    for item in contexts:
        render.table(
            f"{item.secretary} — last active {item.last_activity.isoformat(timespec='seconds')}",
            ["at", "role", "content"],
            ((m.at.isoformat(timespec="seconds"), m.role, _shown(m)) for m in item.messages),
        )


def _shown(message: Any) -> str:
    """A message's text; an assistant's tool calls as `→ name(arguments)` lines."""
    calls = (message.metadata or {}).get("tool_calls") if message.metadata else None
    if message.role == "assistant" and calls:
        lines = [
            f"→ {c.get('function', {}).get('name')}({c.get('function', {}).get('arguments')})"
            for c in calls
            if isinstance(c, dict)
        ]
        return "\n".join([message.content, *lines] if message.content else lines)
    return str(message.content)


def contexts_purge(
    rt: Runtime,
    older_than: timedelta | None,
    user: UserRef | None,
    secretary: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """`contexts purge`: a progress bar on a terminal unless dry or JSON."""
    from secretaries_core.catalog import admin

    with render.progress_bar("purging contexts", enabled=not (as_json or dry_run)) as progress:
        result = admin.purge_contexts(
            rt.engine(),
            rt.contexts(),
            older_than=older_than,
            user=user,
            secretary=secretary,
            dry_run=dry_run,
            progress=progress,
        )
    if as_json:
        render.emit_json(result.doc())
    elif dry_run:
        render.say(f"Dry run: {result.purged} context(s) would be purged.")
    else:
        render.say(f"Purged {result.purged} context(s).")


def delete_secretary(rt: Runtime, sec: str, as_json: bool) -> None:
    """`delete SEC`, confirmed."""
    from secretaries_core.catalog import admin

    result = admin.delete_secretary(rt.engine(), rt.contexts(), sec)
    if as_json:
        render.emit_json(result.doc())
    else:
        render.say(f"Deleted secretary {result.name} ({result.contexts} context(s)).")


def erasure_question(rt: Runtime, user: UserRef) -> tuple[int, str]:
    """The user's Telegram id (refused when unknown) and what to ask before erasing them."""
    # On Core, not the registry: nothing in this process listens for the change.
    telegram_id = rt.telegram_id(user)
    return telegram_id, f"Erase user {telegram_id} with their history, contexts and usage?"


def erase_user(rt: Runtime, telegram_id: int, as_json: bool) -> None:
    """`users delete USER`, confirmed: the user everywhere, the queue's copies included."""
    from secretaries_core.catalog import admin

    queue = None
    if rt.settings.queue_address() is not None:  # redis-py only when a queue is configured
        from secretaries_core.queue.client import Queue

        queue = Queue.if_configured(rt.settings)
    try:
        result = admin.erase_user(rt.engine(), rt.contexts(), telegram_id, queue)
    finally:
        if queue is not None:
            queue.close()
    if as_json:
        render.emit_json(result.doc())
    else:
        render.say(
            f"Erased user {result.telegram_id}: {result.links} link(s), "
            f"{result.contexts} context(s), {result.usage_rows} usage row(s) folded into "
            f"totals, {result.queued_dropped} queued message(s) dropped unanswered."
        )


def tool_arguments(args: str) -> dict[str, Any]:
    """`--args` of `tools call`: a JSON object, else refused."""
    try:
        arguments = jsonlib.loads(args)
    except jsonlib.JSONDecodeError as exc:
        raise InvalidInput(f"--args is not JSON: {exc}") from None
    if not isinstance(arguments, dict):
        raise InvalidInput("--args must be a JSON object")
    return arguments


def call_tool(rt: Runtime, name: str, args: str, tool: str | None, as_json: bool) -> None:
    """`tools call NAME --args JSON`: one call, its result printed; a failed call is an error."""
    import asyncio
    import uuid

    from secretaries_core.tools.calling import ToolCaller
    from secretaries_core.tools.http_tool import stdlib_post
    from secretaries_core.tools.registry import ToolRegistry

    arguments = tool_arguments(args)
    spec = ToolRegistry(rt.engine()).get(name)
    call_id = f"cli-{uuid.uuid4().hex[:12]}:0:0"

    async def once() -> Any:
        caller = ToolCaller(rt.settings.tool_result_chars, stdlib_post)
        try:
            return await caller.call(spec, arguments, call_id, tool)
        finally:
            await caller.aclose()

    result = asyncio.run(once())
    if as_json:
        render.emit_json({"tool": name, "call_id": call_id, "ok": result.ok, "result": result.text})
    elif result.ok:
        render.say(result.text)
    if not result.ok:
        raise SecretariesError(f"tool {name}: {result.text.removeprefix('error: ')}")


def usage(
    rt: Runtime,
    user: UserRef | None,
    secretary: str | None,
    since: timedelta | None,
    by_version: bool,
    limit: int | None,
    offset: int,
    as_json: bool,
) -> None:
    """`usage`: day rows from `offset`, at most `limit`; the totals are the whole report's."""
    from secretaries_core.catalog.usage_report import usage_report, version_usage

    engine = rt.engine()
    report = usage_report(engine, user=user, secretary=secretary, since=since)
    # Paging picks the day rows shown; the totals stay those of the whole report.
    end = None if limit is None else offset + limit
    report.days = report.days[offset:end]
    versions = None
    if by_version:
        with engine.connect() as conn:
            versions = version_usage(conn, secretary)
    if as_json:
        doc = report.as_dict()
        if versions is not None:
            doc["by_version"] = versions
        render.emit_json(doc)
        return
    if versions is not None:
        render.table(
            "per version (lifetime)",
            ["secretary", "version", "messages", "errors", "prompt", "completion", "👍", "👎"],
            (
                (
                    name,
                    v,
                    c["messages"],
                    c["errors"],
                    c["prompt_tokens"],
                    c["completion_tokens"],
                    c["likes"],
                    c["dislikes"],
                )
                for name, rows in versions.items()
                for v, c in rows.items()
            ),
        )
    priced = report.total.cost is not None
    columns = ["day", "secretary", "model", "messages", "prompt", "completion"]
    title = (
        f"{report.total.messages} message(s), {report.total.prompt_tokens} prompt + "
        f"{report.total.completion_tokens} completion tokens"
    )
    if priced:
        columns.append("cost")
        title += f", cost {report.total.cost:.4f}"
    rows = []
    for row in report.days:
        t = row.totals
        cells: list[Any] = [row.day, row.secretary, row.model, t.messages]
        # An asterisk marks counts that include our own estimate (no usage from the provider).
        mark = "*" if t.estimated_calls else ""
        cells += [f"{t.prompt_tokens}{mark}", f"{t.completion_tokens}{mark}"]
        if priced:
            cells.append("" if t.cost is None else f"{t.cost:.4f}")
        rows.append(cells)
    render.table(title, columns, rows)
    if any(r.totals.estimated_calls for r in report.days):
        render.say("* includes estimated counts (the provider reported no usage)")


# -- catalog as code ------------------------------------------------------------------------


def read_catalog(path: Path) -> list[object]:
    """The secretaries a catalog file declares; refused with the file's name."""
    from secretaries_core.catalog.as_code import parse

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{path} is not UTF-8 text") from None
    try:
        return list(parse(text))
    except InvalidInput as exc:
        raise InvalidInput(f"{path}: {exc}") from None


def show_changes(changes: Sequence[object], as_json: bool, *, done: bool) -> None:
    """What `plan` would change or `apply` changed."""
    docs = [c.doc() for c in changes]  # type: ignore[attr-defined]
    if as_json:
        render.emit_json({"changes": docs})
        return
    if not docs:
        render.say("No changes: the catalog matches the file.")
        return
    for doc in docs:
        render.say(f"{doc['action']} {doc['secretary']}: {', '.join(doc['fields'])}")
        if doc.get("refused"):
            render.say(f"  refused: {doc['refused']}")
        if doc.get("rollout"):
            render.say(f"  {doc['rollout']}")
        if doc.get("prompt_diff"):
            render.say(doc["prompt_diff"])
    refused = sum(1 for d in docs if d.get("refused"))
    render.say(
        f"{len(docs)} change(s) {'applied' if done else 'planned'}"
        + (f"; {refused} would be refused, so `apply` would write nothing." if refused else ".")
    )


def export_catalog(rt: Runtime, out: Path | None) -> None:
    """`export`: the catalog as YAML, on stdout or into `out`."""
    import sys

    from secretaries_core.catalog.as_code import export as dump
    from secretaries_core.catalog.reads import catalog_rows

    with rt.engine().connect() as conn:  # on Core: no ORM for a read
        text = dump(catalog_rows(conn))
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")


def plan_catalog(rt: Runtime, file: Path, prune: bool, as_json: bool) -> None:
    """`plan FILE`: what `apply` would change (and refuse); nothing is written."""
    from secretaries_core.catalog.as_code import plan
    from secretaries_core.catalog.reads import catalog_rows

    declared = read_catalog(file)
    with rt.engine().connect() as conn:
        changes = plan(declared, catalog_rows(conn), prune=prune)  # type: ignore[arg-type]
    show_changes(changes, as_json, done=False)


def planned_changes(rt: Runtime, declared: list[object], prune: bool) -> list[Any]:
    """`apply`'s plan; refused (nothing applied) when `plan` marks a change refused."""
    from secretaries_core.catalog.as_code import plan
    from secretaries_core.catalog.reads import catalog_rows

    with rt.engine().connect() as conn:
        planned = list(plan(declared, catalog_rows(conn), prune=prune))  # type: ignore[arg-type]
    refused = [c.refused for c in planned if c.refused]
    if refused:
        # What `plan` marks as refused: nothing is applied (one code path: the plan).
        raise InvalidInput("nothing applied: " + "; ".join(refused))
    return planned


def apply_on_core(
    rt: Runtime, declared: list[object], prune: bool, canary: int | None
) -> list[Any]:
    """Make the catalog what `declared` says, in one transaction (no eval to record)."""
    from secretaries_core.catalog.catalog_apply import apply_catalog
    from secretaries_core.plumbing.db import transaction
    from secretaries_core.plumbing.timeutil import utcnow

    raced = "the catalog changed meanwhile (a name taken?); retry"
    with transaction(rt.engine(), write=True, conflict=raced) as conn:
        return list(
            apply_catalog(conn, declared, utcnow(), prune=prune, canary=canary)  # type: ignore[arg-type]
        )


def apply_confirmed(
    rt: Runtime, file: Path, prune: bool, canary: int | None, as_json: bool
) -> None:
    """`apply FILE --yes` without eval suites; a file naming one needs the Typer app
    (`NotPlain`, raised before anything is written)."""
    declared = read_catalog(file)
    planned_changes(rt, declared, prune)
    if any(getattr(item, "eval", None) is not None for item in declared):
        raise NotPlain("eval suites are run by the Typer app")
    show_changes(apply_on_core(rt, declared, prune, canary), as_json, done=True)


def chat(rt: Runtime, user: UserRef, message: str, as_json: bool, approve: bool) -> None:
    """`chat USER MESSAGE`: an @username must be known; a numeric id may be new (the
    message registers it)."""
    import sys

    from secretaries_core.tools.approval import fixed

    approver = fixed(approve)
    telegram_id = user if isinstance(user, int) else rt.telegram_id(user)
    orchestrator = rt.serving_orchestrator()
    try:
        if not as_json and sys.stdout.isatty():
            # On a terminal the reply appears as the model writes it; tool calls on stderr.
            stream = orchestrator.astream(telegram_id, message)
            stream.approver = approver
            stream.on_tool = _tool_line
            for piece in _pieces(orchestrator, stream):
                sys.stdout.write(render.for_terminal(piece))
                sys.stdout.flush()
            sys.stdout.write("\n")
            return
        reply = orchestrator.run_sync(orchestrator.ahandle(telegram_id, message, approver=approver))
    finally:
        orchestrator.close()
    if as_json:
        render.emit_json(
            {"reply": reply.text, "secretary": reply.secretary, "source": reply.source}
        )
    elif sys.stdout.isatty():
        render.say(reply.text)
    else:
        render.verbatim(reply.text)


def _pieces(orchestrator: Orchestrator, stream: ReplyStream) -> Iterator[str]:
    """The streamed reply as a plain iterator, driven on the orchestrator's own loop."""
    while True:
        try:
            yield orchestrator.run_sync(anext(stream))
        except StopAsyncIteration:
            return


def _tool_line(function: str, state: str) -> None:
    """A tool call starting or ending, on stderr (the reply on stdout stays clean)."""
    import sys

    sys.stderr.write(render.for_terminal(f"[tool {function}: {state}]") + "\n")
    sys.stderr.flush()


def run_eval(rt: Runtime, sec: str, suite: Path, version: int | None, as_json: bool) -> int:
    """`eval SEC --suite FILE`: the exit code (1 when a case failed)."""
    import sys

    from secretaries_core.evals.runner import run_eval as run
    from secretaries_core.evals.suite import parse_suite

    try:
        text = suite.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read --suite {suite}: {exc}") from None
    parsed = parse_suite(text, str(suite))
    orchestrator = rt.serving_orchestrator()
    try:
        with render.progress_bar("evaluating", enabled=not as_json and sys.stderr.isatty()) as step:
            result = orchestrator.run_sync(
                run(orchestrator, sec, parsed, version=version, progress=step)
            )
    finally:
        orchestrator.close()
    if as_json:
        render.emit_json(result.doc())
    else:
        render.say(
            f"{result.secretary} version {result.version}: {result.passed} passed, "
            f"{result.failed} failed"
        )
        for case in result.cases:
            render.say(f"  {'ok  ' if case.passed else 'FAIL'} {case.name}")
            for line in case.failures:
                render.say(f"       {line}")
            for call in case.not_run:
                render.say(f"       not run in eval: {call}")
    return 1 if result.failed else 0


def replay(
    rt: Runtime,
    sec: str,
    version: int | None,
    users: int,
    judge: str | None,
    judge_model: str | None,
    as_json: bool,
) -> None:
    """`replay SEC`: a version asked the last question of stored conversations."""
    from secretaries_core.evals.replay import replay as run

    orchestrator = rt.serving_orchestrator()
    try:
        with render.progress_bar("replaying", enabled=not as_json) as step:
            number, results = orchestrator.run_sync(
                run(orchestrator, sec, version=version, users=users, progress=step)
            )
        docs = [r.doc() for r in results]
        counts: dict[str, int] = {}
        if judge is not None:
            from secretaries_core.evals.comparing import judge_replay, with_verdicts

            compared = orchestrator.run_sync(
                judge_replay(orchestrator, sec, number, results, judge, judge_model)
            )
            docs, counts = with_verdicts(docs, compared), compared.counts()
    finally:
        orchestrator.close()
    if as_json:
        render.emit_json({"secretary": sec, "version": number, "conversations": docs, **counts})
        return
    render.say(f"{sec} version {number} on {len(results)} conversation(s):")
    for r, doc in zip(results, docs, strict=True):
        render.say(f"\n[{r.telegram_id}] Q: {r.question}")
        render.say(f"  stored:  {r.stored_answer or '(none)'}")
        render.say(f"  v{number}: {r.answer if r.error is None else 'error: ' + r.error}")
        if doc.get("verdict"):
            render.say(f"  judge:   {doc['verdict']}")
        for call in r.not_run:
            render.say(f"  not run: {call}")
    if counts:
        render.say(
            f"\nthe candidate: {counts['wins']} win(s), {counts['ties']} tie(s), "
            f"{counts['losses']} loss(es)"
            + (f", {counts['unreadable']} unreadable" if counts["unreadable"] else "")
        )
