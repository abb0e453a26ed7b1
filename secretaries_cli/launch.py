"""The `secretaries` console script: the quick reads first, else the Typer app."""

from __future__ import annotations

import sys


def main() -> None:
    """Console-script entry point."""
    from secretaries_cli import quick

    code = quick.run(sys.argv[1:])
    if code is not None:
        raise SystemExit(code)
    from secretaries_cli.app import main as typer_main

    typer_main()
