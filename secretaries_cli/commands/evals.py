"""`secretaries eval`: run a suite against a version and keep the result (release gates)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
        from secretaries_cli import plain

        code = plain.run_eval(runtime(ctx), sec, suite, version, json)
        if code:
            raise typer.Exit(code)
