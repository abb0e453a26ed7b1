"""Help output for people: no `<bool>` after flags, no `<Any>` after custom-parsed arguments.

Typer labels every parameter with its Python type. For a flag that label says nothing
(`--json <bool>`), and for an argument parsed by our own function it leaks `Any`; the
metavar (USER, SEC, REV) already names what to type. Installed once, by the app.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperArgument, TyperOption


def install() -> None:
    """Drop the type label of flags, and of arguments that have a metavar."""
    if getattr(TyperOption, "_secretaries_help", False):
        return
    if not hasattr(TyperOption, "display_type_rich"):
        return  # an older Typer (< 0.28) labels differently; its help stays as it is
    # getattr/setattr: the method exists from Typer 0.28 on, and is absent before.
    option_label = getattr(TyperOption, "display_type_rich")  # noqa: B009
    argument_label = getattr(TyperArgument, "display_type_rich")  # noqa: B009

    def option(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else option_label(self, ctx)

    def argument(self: TyperArgument, ctx: Any) -> str | None:
        return None if self.metavar is not None else argument_label(self, ctx)

    setattr(TyperOption, "display_type_rich", option)  # noqa: B010
    setattr(TyperArgument, "display_type_rich", argument)  # noqa: B010
    TyperOption._secretaries_help = True  # type: ignore[attr-defined]
