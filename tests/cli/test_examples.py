"""Every `Example:` line in the commands' help parses: no option that does not exist, no
argument missing or too many (the example is what a reader copies first)."""

from __future__ import annotations

import shlex
from typing import Any

import typer.main
from typer._click.exceptions import NoSuchOption, UsageError

from secretaries_cli.app import app


def _commands(group: Any, path: list[str]) -> list[tuple[list[str], Any]]:
    found = []
    for name, command in sorted(group.commands.items()):
        if hasattr(command, "commands"):
            found += _commands(command, [*path, name])
        else:
            found.append(([*path, name], command))
    return found


def _parse(command: Any, name: str, args: list[str], parent: Any = None) -> None:
    ctx = command.make_context(name, list(args), parent=parent)
    if hasattr(command, "commands"):
        rest = [*ctx._protected_args, *ctx.args]
        sub_name, sub, sub_args = command.resolve_command(ctx, rest)
        _parse(sub, sub_name, sub_args, ctx)


def test_every_example_in_the_help_parses() -> None:
    root = typer.main.get_command(app)
    wrong = []
    seen = 0
    for path, command in _commands(root, []):
        for line in (command.help or "").splitlines():
            if "Example:" not in line:
                continue
            words = shlex.split(line.split("Example:", 1)[1])
            words = words[words.index("secretaries") + 1 :]  # past any VAR=value prefix
            seen += 1
            try:
                _parse(root, "secretaries", words)
            except NoSuchOption as exc:
                wrong.append(f"{' '.join(path)}: {line.strip()} -> {exc.format_message()}")
            except UsageError as exc:
                message = exc.format_message()
                # A file the example names need not exist here; anything else is wrong.
                if "does not exist" not in message:
                    wrong.append(f"{' '.join(path)}: {line.strip()} -> {message}")
    assert seen >= 50
    assert wrong == []
