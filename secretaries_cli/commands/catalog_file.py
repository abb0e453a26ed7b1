"""Catalog as code: export, plan, apply."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from secretaries_cli import output, plain
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
        plain.export_catalog(runtime(ctx), out)

    @app.command("plan")
    def plan(
        ctx: typer.Context, file: FileArg, prune: PruneOpt = False, json: JsonFlag = False
    ) -> None:
        """Show what `apply FILE` would change; nothing is written.

        Example: secretaries plan catalog.yaml --prune
        """
        plain.plan_catalog(runtime(ctx), file, prune, json)

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
        declared = plain.read_catalog(file)
        rt = runtime(ctx)
        planned = plain.planned_changes(rt, declared, prune)
        if planned and not yes:
            # As `users delete`: ask on a terminal, else (a script) require --yes.
            if sys.stdin.isatty() and not json:
                plain.show_changes(list(planned), False, done=False)
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
            changes = plain.apply_on_core(rt, declared, prune, canary)
        plain.show_changes(list(changes), json, done=True)
