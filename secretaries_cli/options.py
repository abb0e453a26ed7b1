"""Options shared by many commands: one definition each, the same help everywhere."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, TypeVar

import typer

T = TypeVar("T")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
LimitOpt = Annotated[
    int | None,
    typer.Option("--limit", min=0, metavar="N", help="Show at most N rows (default: all)."),
]
MetricsPortOpt = Annotated[
    int | None,
    typer.Option(
        "--metrics-port",
        min=1,
        max=65535,
        metavar="PORT",
        help="Serve this process's Prometheus metrics on PORT/metrics "
        "(host: SECRETARIES_METRICS_HOST, default 127.0.0.1).",
    ),
]
OffsetOpt = Annotated[
    int, typer.Option("--offset", min=0, metavar="N", help="Skip the first N rows.")
]


def page(rows: Sequence[T], limit: int | None, offset: int) -> list[T]:
    """`rows` from `offset`, at most `limit` of them."""
    end = None if limit is None else offset + limit
    return list(rows[offset:end])
