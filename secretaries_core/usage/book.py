"""Recording usage (one upsert per message) and reading it back, summed as people ask."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.sql import column as sql_column
from sqlalchemy.sql import table as sql_table

from secretaries_core.plumbing.db import transaction
from secretaries_core.usage.tables import (
    QUOTA_DAY_TABLE,
    USAGE_TABLE,
    USER_LIMIT_TABLE,
)
from secretaries_core.usage.upsert import insert_for

PRICE_PROMPT = "price_prompt"
PRICE_COMPLETION = "price_completion"
PER_PRICE_UNIT = 1_000_000  # prices are per million tokens


@dataclass(frozen=True)
class UsageEntry:
    """What one model call used, for one (user, secretary, model, UTC day)."""

    telegram_id: int
    secretary_id: uuid.UUID
    model: str
    day: date
    messages: int
    prompt_tokens: int
    completion_tokens: int
    estimated: bool
    tool_calls: int = 0  # the tool calls the message made (run, not reused)


@dataclass
class PendingUsage:
    """Usage not written yet, summed per usage row and per user-day row."""

    usage: dict[tuple[int, uuid.UUID, str, date], list[int]] = field(default_factory=dict)
    days: dict[tuple[int, date], list[int]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """True when there is nothing to write."""
        return not self.usage and not self.days

    def add(self, entries: Sequence[UsageEntry], admitted_tokens: int | None = None) -> None:
        """Sum `entries` in (one user's calls).

        A message admitted under a quota was already counted on its user-day row with
        `admitted_tokens` expected: only the difference is added for it.
        """
        for e in entries:
            row = self.usage.setdefault((e.telegram_id, e.secretary_id, e.model, e.day), [0] * 5)
            row[0] += e.messages
            row[1] += e.prompt_tokens
            row[2] += e.completion_tokens
            row[3] += 1 if e.estimated else 0
            row[4] += e.tool_calls
        if not entries:
            return
        spent = sum(e.prompt_tokens + e.completion_tokens for e in entries)
        messages = sum(e.messages for e in entries)
        if admitted_tokens is not None:
            # Admission already counted the message and the tokens it expected.
            spent, messages = spent - admitted_tokens, 0
        day = self.days.setdefault((entries[0].telegram_id, entries[0].day), [0, 0])
        day[0] += messages
        day[1] += spent

    def merge(self, other: PendingUsage) -> None:
        """Add `other` into this (a failed write's rows go back in line)."""
        for key, values in other.usage.items():
            row = self.usage.setdefault(key, [0] * 5)
            for i, value in enumerate(values):
                row[i] += value
        for day_key, values in other.days.items():
            day = self.days.setdefault(day_key, [0, 0])
            day[0] += values[0]
            day[1] += values[1]


@dataclass
class Totals:
    """Sums of messages and tokens (and cost, when the secretary has prices)."""

    messages: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated_calls: int = 0
    tool_calls: int = 0
    cost: float | None = None

    def add(self, row: Any, cost: float | None) -> None:
        """Add one usage row (and its cost)."""
        self.messages += int(row.messages)
        self.prompt_tokens += int(row.prompt_tokens)
        self.completion_tokens += int(row.completion_tokens)
        self.estimated_calls += int(row.estimated_calls)
        self.tool_calls += int(row.tool_calls or 0)
        if cost is not None:
            self.cost = (self.cost or 0.0) + cost

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: the three counts of SPEC.md, then the extras."""
        out: dict[str, Any] = {
            "messages": self.messages,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "estimated_calls": self.estimated_calls,
            "tool_calls": self.tool_calls,
        }
        if self.cost is not None:
            out["cost"] = round(self.cost, 6)
        return out


@dataclass
class DayRow:
    """One line of the report: a day, a secretary and a model."""

    day: date
    secretary: str
    model: str
    totals: Totals


@dataclass
class UsageReport:
    """Usage summed in total, per secretary (by name) and per day."""

    total: Totals = field(default_factory=Totals)
    by_secretary: dict[str, Totals] = field(default_factory=dict)
    days: list[DayRow] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The document of `secretaries usage --json` and `GET /api/usage`."""
        return {
            **self.total.as_dict(),
            "by_secretary": {name: t.as_dict() for name, t in self.by_secretary.items()},
            "days": [
                {"day": r.day.isoformat(), "secretary": r.secretary, "model": r.model}
                | r.totals.as_dict()
                for r in self.days
            ],
        }


def _price(params: Any, key: str) -> float | None:
    value = params.get(key) if isinstance(params, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except ValueError:
        return None


# The usage of erased users is kept under this id: totals per secretary, model and day.
ERASED_USER = 0


# (connection, secretary ids) -> id -> (name, params): who the usage rows are of.
Describe = Callable[[Any, set[uuid.UUID]], dict[uuid.UUID, tuple[str, Any]]]


class UsageBook:
    """Usage rows in the catalog's database: written set-based, read summed."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._upsert: Any = None
        self._day_upsert: Any = None

    def _statement(self) -> Any:
        if self._upsert is None:
            stmt = insert_for(self.engine, USAGE_TABLE)
            excluded = stmt.excluded
            table = USAGE_TABLE.c
            self._upsert = stmt.on_conflict_do_update(
                index_elements=["telegram_id", "secretary_id", "model", "day"],
                set_={
                    "messages": table.messages + excluded.messages,
                    "prompt_tokens": table.prompt_tokens + excluded.prompt_tokens,
                    "completion_tokens": table.completion_tokens + excluded.completion_tokens,
                    "estimated_calls": table.estimated_calls + excluded.estimated_calls,
                    "tool_calls": table.tool_calls + excluded.tool_calls,
                },
            )
        return self._upsert

    def _day_statement(self) -> Any:
        if self._day_upsert is None:
            stmt = insert_for(self.engine, QUOTA_DAY_TABLE)
            q = QUOTA_DAY_TABLE.c
            self._day_upsert = stmt.on_conflict_do_update(
                index_elements=["telegram_id", "day"],
                set_={
                    "messages": q.messages + stmt.excluded.messages,
                    "tokens": q.tokens + stmt.excluded.tokens,
                },
            )
        return self._day_upsert

    def write(self, pending: PendingUsage) -> None:
        """Write summed usage and user-day deltas in one transaction (two upserts)."""
        if pending.empty:
            return
        usage_rows = [
            {
                "telegram_id": tid,
                "secretary_id": sid,
                "model": model,
                "day": day,
                "messages": v[0],
                "prompt_tokens": v[1],
                "completion_tokens": v[2],
                "estimated_calls": v[3],
                "tool_calls": v[4],
            }
            for (tid, sid, model, day), v in pending.usage.items()
        ]
        day_rows = [
            {"telegram_id": tid, "day": day, "messages": v[0], "tokens": v[1]}
            for (tid, day), v in pending.days.items()
        ]
        with transaction(self.engine, write=True) as conn:
            named = {int(str(row["telegram_id"])) for row in usage_rows + day_rows}
            gone = self._erased(conn, named)
            if gone:
                # Usage of a call that ended after its user was erased: it stays in the
                # totals only (under no user), and no quota row names the user again.
                for row in usage_rows:
                    if row["telegram_id"] in gone:
                        row["telegram_id"] = ERASED_USER
                day_rows = [row for row in day_rows if row["telegram_id"] not in gone]
            if usage_rows:
                conn.execute(self._statement(), usage_rows)
            if day_rows:
                conn.execute(self._day_statement(), day_rows)

    @staticmethod
    def _erased(conn: Any, telegram_ids: set[int]) -> set[int]:
        """Which of `telegram_ids` are no registered user (erased); their rows are held
        (FOR SHARE) until this write commits, so an erase folds what it writes."""
        users = sql_table("telegramuser", sql_column("telegram_id"))
        ids = sorted(t for t in telegram_ids if t != ERASED_USER)
        if not ids:
            return set()
        query = select(users.c.telegram_id).where(users.c.telegram_id.in_(ids))
        if conn.engine.dialect.name == "postgresql":
            query = query.with_for_update(read=True)
        return set(ids) - {row[0] for row in conn.execute(query)}

    def report(
        self,
        *,
        telegram_id: int | None = None,
        secretary_id: uuid.UUID | None = None,
        since: date | None = None,
        describe: Describe | None = None,
    ) -> UsageReport:
        """Usage summed per day, secretary and model (with the filters given); `describe`
        names the secretaries seen and gives their params (prices) — the catalog's, passed
        in: usage sits below the catalog and does not read its tables."""
        u = USAGE_TABLE.c
        query = (
            select(
                u.day,
                u.secretary_id,
                u.model,
                func.sum(u.messages).label("messages"),
                func.sum(u.prompt_tokens).label("prompt_tokens"),
                func.sum(u.completion_tokens).label("completion_tokens"),
                func.sum(u.estimated_calls).label("estimated_calls"),
                func.sum(u.tool_calls).label("tool_calls"),
            )
            .group_by(u.day, u.secretary_id, u.model)
            .order_by(u.day, u.secretary_id, u.model)
        )
        if telegram_id is not None:
            query = query.where(u.telegram_id == telegram_id)
        if secretary_id is not None:
            query = query.where(u.secretary_id == secretary_id)
        if since is not None:
            query = query.where(u.day >= since)
        report = UsageReport()
        with transaction(self.engine) as conn:
            rows = conn.execute(query).all()
            ids = {row.secretary_id for row in rows}
            # Names and prices of the secretaries seen (a deleted one shows as its id).
            secretaries = describe(conn, ids) if describe is not None and ids else {}
        by_name: dict[str, Totals] = defaultdict(Totals)
        for row in rows:
            name, params = secretaries.get(row.secretary_id, (str(row.secretary_id), None))
            cost = _cost(params, row)
            totals = Totals()
            totals.add(row, cost)
            report.days.append(DayRow(row.day, name, row.model, totals))
            by_name[name].add(row, cost)
            report.total.add(row, cost)
        report.days.sort(key=lambda r: (r.day, r.secretary, r.model))
        report.by_secretary = dict(sorted(by_name.items()))
        return report

    @staticmethod
    def erase_user(conn: Any, telegram_id: int) -> int:
        """Fold one user's usage into the totals of no user (`ERASED_USER`) and delete their
        quota counters and limits, in `conn`'s transaction; returns the rows folded.

        Per secretary, model and day the totals stay what they were: reports and bills do
        not change when a user is erased, and nothing in them names the user any more.
        """
        from secretaries_core.usage.upsert import insert_for

        table = USAGE_TABLE
        rows = conn.execute(table.select().where(table.c.telegram_id == telegram_id)).all()
        counted = (
            "messages",
            "prompt_tokens",
            "completion_tokens",
            "estimated_calls",
            "tool_calls",
        )
        for row in rows:
            values = {**row._mapping, "telegram_id": ERASED_USER}
            insert = insert_for(conn.engine, table).values(**values)
            conn.execute(
                insert.on_conflict_do_update(
                    index_elements=["telegram_id", "secretary_id", "model", "day"],
                    set_={c: table.c[c] + insert.excluded[c] for c in counted},
                )
            )
        conn.execute(delete(table).where(table.c.telegram_id == telegram_id))
        conn.execute(delete(QUOTA_DAY_TABLE).where(QUOTA_DAY_TABLE.c.telegram_id == telegram_id))
        conn.execute(delete(USER_LIMIT_TABLE).where(USER_LIMIT_TABLE.c.telegram_id == telegram_id))
        return len(rows)


def _cost(params: Any, row: Any) -> float | None:
    prompt_price = _price(params, PRICE_PROMPT)
    completion_price = _price(params, PRICE_COMPLETION)
    if prompt_price is None and completion_price is None:
        return None
    return (
        int(row.prompt_tokens) * (prompt_price or 0.0)
        + int(row.completion_tokens) * (completion_price or 0.0)
    ) / PER_PRICE_UNIT
