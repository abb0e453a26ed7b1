"""Catalog as code: export, plan, apply."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from secretaries_cli import output
from secretaries_cli.options import JsonFlag
from secretaries_cli.runtime import App, runtime
from secretaries_core.errors import InvalidInput

if TYPE_CHECKING:
    from secretaries_core.evals.runner import EvalResult

FileArg = Annotated[
    Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="A catalog YAML file.")
]
PruneOpt = Annotated[
    bool, typer.Option("--prune", help="Deactivate secretaries the file no longer has.")
]


def _read(path: Path) -> list[object]:
    from secretaries_core.catalog.as_code import parse

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{path} is not UTF-8 text") from None
    try:
        return list(parse(text))
    except InvalidInput as exc:
        raise InvalidInput(f"{path}: {exc}") from None


def _show(changes: Sequence[object], json: bool, *, done: bool) -> None:
    docs = [c.doc() for c in changes]  # type: ignore[attr-defined]
    if json:
        output.emit_json({"changes": docs})
        return
    if not docs:
        output.say("No changes: the catalog matches the file.")
        return
    for doc in docs:
        output.say(f"{doc['action']} {doc['secretary']}: {', '.join(doc['fields'])}")
        if doc.get("refused"):
            output.say(f"  refused: {doc['refused']}")
        if doc.get("rollout"):
            output.say(f"  {doc['rollout']}")
        if doc.get("prompt_diff"):
            output.say(doc["prompt_diff"])
    refused = sum(1 for d in docs if d.get("refused"))
    output.say(
        f"{len(docs)} change(s) {'applied' if done else 'planned'}"
        + (f"; {refused} would be refused, so `apply` would write nothing." if refused else ".")
    )


def _run_suites(
    ctx: typer.Context, file: Path, declared: list[object], planned: list[object], *, quiet: bool
) -> dict[str, EvalResult]:
    """Run the `eval:` suite of each changed secretary on its declared content."""
    changed = {
        c.secretary  # type: ignore[attr-defined]
        for c in planned
        if c.action == "update"  # type: ignore[attr-defined]
        and {"model", "prompt", "params"} & set(c.fields)  # type: ignore[attr-defined]
    }
    results: dict[str, EvalResult] = {}
    for item in declared:
        suite_path = getattr(item, "eval", None)
        name = getattr(item, "name", "")
        if suite_path is None or name not in changed:
            continue
        path = (file.parent / suite_path).resolve()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"{name}: cannot read its eval suite {suite_path}: {exc}") from None
        from secretaries_core.evals.runner import run_eval_declared
        from secretaries_core.evals.suite import parse_suite

        suite = parse_suite(text, str(suite_path))
        orchestrator = runtime(ctx).orchestrator()
        result = orchestrator.run_sync(
            run_eval_declared(
                orchestrator,
                name,
                item.model,  # type: ignore[attr-defined]
                item.prompt,  # type: ignore[attr-defined]
                dict(item.params),  # type: ignore[attr-defined]
                suite,
            )
        )
        if not quiet:
            output.say(f"eval {name}: {result.passed} passed, {result.failed} failed")
            for line in result.failure_lines():
                output.say(f"  {line}")
        results[name] = result
    return results


def register(app: App) -> None:
    """Add export, plan and apply to the root app."""

    @app.command("export")
    def export(
        ctx: typer.Context,
        out: Annotated[
            Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
        ] = None,
    ) -> None:
        """Write the catalog as YAML (prompts as block scalars).

        Example: secretaries export --output catalog.yaml
        """
        from secretaries_core.catalog.as_code import export as dump
        from secretaries_core.catalog.reads import catalog_rows

        with runtime(ctx).engine().connect() as conn:  # on Core: no ORM for a read
            text = dump(catalog_rows(conn))
        if out is None:
            sys.stdout.write(text)
        else:
            out.write_text(text, encoding="utf-8")

    @app.command("plan")
    def plan(
        ctx: typer.Context, file: FileArg, prune: PruneOpt = False, json: JsonFlag = False
    ) -> None:
        """Show what `apply FILE` would change; nothing is written.

        Example: secretaries plan catalog.yaml --prune
        """
        from secretaries_core.catalog.as_code import plan as planned
        from secretaries_core.catalog.reads import catalog_rows

        declared = _read(file)
        with runtime(ctx).engine().connect() as conn:  # on Core: no ORM for a read
            changes = planned(declared, catalog_rows(conn), prune=prune)  # type: ignore[arg-type]
        _show(changes, json, done=False)

    @app.command("apply")
    def apply(
        ctx: typer.Context,
        file: FileArg,
        prune: PruneOpt = False,
        canary: Annotated[
            int | None,
            typer.Option(
                "--canary", min=0, max=100, help="Roll changed versions out to P% instead."
            ),
        ] = None,
        require_eval: Annotated[
            bool,
            typer.Option("--require-eval", help="With --canary: only content whose eval passed."),
        ] = False,
        yes: Annotated[bool, typer.Option("--yes", help="Do not ask first.")] = False,
        json: JsonFlag = False,
    ) -> None:
        """Make the catalog what FILE says, in one transaction.

        A secretary with `eval: SUITE` in the file has its suite run on the declared content
        of a change before anything is written; with `--canary P --require-eval` a change
        whose content has no passing eval is refused, and nothing is applied.

        Example: secretaries apply catalog.yaml --canary 10 --yes
        """
        if require_eval and canary is None:
            raise typer.BadParameter("gates a canary: add --canary P", param_hint="--require-eval")
        from secretaries_core.catalog.as_code import plan as planning
        from secretaries_core.catalog.reads import catalog_rows

        declared = _read(file)
        rt = runtime(ctx)
        with rt.engine().connect() as conn:  # on Core: no ORM for the plan
            planned = planning(declared, catalog_rows(conn), prune=prune)  # type: ignore[arg-type]
        refused = [c.refused for c in planned if c.refused]
        if refused:
            # What `plan` marks as refused: nothing is applied (one code path: the plan).
            raise InvalidInput("nothing applied: " + "; ".join(refused))
        if planned and not yes:
            # As `users delete`: ask on a terminal, else (a script) require --yes.
            if sys.stdin.isatty() and not json:
                _show(list(planned), False, done=False)
            if not output.confirmed("Apply these changes?", yes=False):
                raise InvalidInput(
                    "nothing applied: confirm on a terminal or pass --yes "
                    f"({len(planned)} change(s) planned; `secretaries plan` shows them)"
                )
        evaluated = _run_suites(ctx, file, declared, list(planned), quiet=json)
        if require_eval or evaluated:  # the eval records are the registry's
            registry = rt.registry()
            changes = registry.apply_catalog(
                declared,  # type: ignore[arg-type]
                prune=prune,
                canary=canary,
                require_eval=require_eval,
            )
            for name, result in evaluated.items():
                # The suite's result, kept for the version the change made as well.
                newest = registry.versions(name)[0]
                registry.record_eval(
                    registry.get_secretary(name).id,
                    newest.version,
                    passed=result.passed,
                    failed=result.failed,
                    failures=result.failure_lines(),
                )
        else:
            from secretaries_core.catalog.catalog_apply import apply_catalog
            from secretaries_core.plumbing.db import transaction
            from secretaries_core.plumbing.timeutil import utcnow

            raced = "the catalog changed meanwhile (a name taken?); retry"
            with transaction(rt.engine(), write=True, conflict=raced) as conn:
                changes = apply_catalog(
                    conn,
                    declared,  # type: ignore[arg-type]
                    utcnow(),
                    prune=prune,
                    canary=canary,
                )
        _show(list(changes), json, done=True)
