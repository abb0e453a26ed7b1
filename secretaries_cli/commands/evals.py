"""`secretaries eval`: run a suite against a version and keep the result (release gates)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from secretaries_cli import output
from secretaries_cli.options import JsonFlag
from secretaries_cli.runtime import App, runtime

SecArg = Annotated[str, typer.Argument(help="Secretary name or UUID.")]


def register(app: App) -> None:
    """Add `eval` to the root app."""

    @app.command("eval")
    def eval_(
        ctx: typer.Context,
        sec: SecArg,
        suite: Annotated[
            Path,
            typer.Option(
                "--suite", exists=True, dir_okay=False, readable=True, help="The YAML suite."
            ),
        ],
        version: Annotated[
            int | None,
            typer.Option("--version", help="Default: the newest draft or candidate."),
        ] = None,
        json: JsonFlag = False,
    ) -> None:
        """Ask a version each case of a suite and check the replies; nothing is stored.

        Exit 0 when every case passes, 1 listing each failure. The result is kept as the
        version's latest eval (`versions --json`), which `--require-eval` gates on.

        Example: secretaries eval alice --suite evals/alice.yaml
        """
        from secretaries_core.errors import InvalidInput
        from secretaries_core.evals.runner import run_eval
        from secretaries_core.evals.suite import parse_suite

        try:
            text = suite.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"cannot read --suite {suite}: {exc}") from None
        parsed = parse_suite(text, str(suite))
        orchestrator = runtime(ctx).orchestrator()
        if json or not sys.stderr.isatty():
            result = orchestrator.run_sync(run_eval(orchestrator, sec, parsed, version=version))
        else:
            from rich.progress import Progress

            with Progress(transient=True) as bar:
                task = bar.add_task("evaluating", total=len(parsed.cases))

                def step(done: int, total: int) -> None:
                    bar.update(task, completed=done, total=total)

                result = orchestrator.run_sync(
                    run_eval(orchestrator, sec, parsed, version=version, progress=step)
                )
        if json:
            output.emit_json(result.doc())
        else:
            output.say(
                f"{result.secretary} version {result.version}: {result.passed} passed, "
                f"{result.failed} failed"
            )
            for case in result.cases:
                mark = "ok  " if case.passed else "FAIL"
                output.say(f"  {mark} {case.name}")
                for line in case.failures:
                    output.say(f"       {line}")
                for call in case.not_run:
                    output.say(f"       not run in eval: {call}")
        if result.failed:
            raise typer.Exit(1)
