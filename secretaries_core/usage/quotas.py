"""Daily quotas per user: admission is one conditional upsert, so races cannot overrun.

The user-day counters (`quota_day`) are kept by every usage write, limited or not, so a
limit set mid-day counts the whole day. A message is admitted when the counters are below
both limits; the admission adds one message and the tokens we expect the call to use,
atomically (SQLite's write lock, PostgreSQL's row lock on the conflicting row). When the
call ends the tokens are corrected to what it used; a call that fails gives its
reservation back.
The token quota is checked before the call, so the message that crosses it completes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Engine, delete, select

from secretaries_core.errors import InvalidInput, QuotaExceeded
from secretaries_core.plumbing.db import transaction
from secretaries_core.usage.tables import QUOTA_DAY_TABLE, USER_LIMIT_TABLE
from secretaries_core.usage.upsert import insert_for

PARAM_MESSAGES = "messages_per_day"
PARAM_TOKENS = "tokens_per_day"
PARAM_TOOL_CALLS = "tool_calls_per_day"
# "No limit" as a bound the columns can hold (INTEGER messages, BIGINT tokens).
_NO_MESSAGE_LIMIT = 2**31 - 1
_NO_TOKEN_LIMIT = 2**62


def _limit(value: Any, what: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidInput(f"{what} must be a whole number >= 0, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise InvalidInput(f"{what} must be a whole number >= 0, got {value!r}") from None
    if number < 0:
        raise InvalidInput(f"{what} must be a whole number >= 0, got {value!r}")
    return number


@dataclass(frozen=True)
class Limits:
    """Daily limits; None means no limit of that kind."""

    messages_per_day: int | None = None
    tokens_per_day: int | None = None

    @classmethod
    def from_params(cls, params: Any) -> Limits:
        """A secretary's `messages_per_day` / `tokens_per_day` params."""
        return cls(
            _limit(params.get(PARAM_MESSAGES), PARAM_MESSAGES),
            _limit(params.get(PARAM_TOKENS), PARAM_TOKENS),
        )

    def over(self, fallback: Limits) -> Limits:
        """These limits where set, `fallback`'s elsewhere."""
        return Limits(
            self.messages_per_day
            if self.messages_per_day is not None
            else fallback.messages_per_day,
            self.tokens_per_day if self.tokens_per_day is not None else fallback.tokens_per_day,
        )

    @property
    def limited(self) -> bool:
        """True when at least one limit applies."""
        return self.messages_per_day is not None or self.tokens_per_day is not None


@dataclass(frozen=True)
class Reservation:
    """One admitted message's claim on its user's daily counters."""

    telegram_id: int
    day: date
    tokens: int


def day_of(at: datetime) -> date:
    """The UTC day `at` falls in."""
    return at.astimezone(UTC).date()


def resets_at(day: date) -> datetime:
    """When the quotas of `day` reset: the next UTC midnight."""
    return datetime.combine(day + timedelta(days=1), time(0), UTC)


def _until(moment: datetime, now: datetime) -> str:
    minutes = max(0, int((moment - now).total_seconds()) // 60)
    return f"{minutes // 60}h {minutes % 60:02d}m"


class Quotas:
    """Per-user overrides and the daily counters that admission increments."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._admit: Any = None

    def overrides(self, telegram_id: int) -> Limits:
        """The user's own limits (`users limit`); unset fields are None."""
        with transaction(self.engine) as conn:
            return self.read_overrides(conn, telegram_id)

    @staticmethod
    def read_overrides(conn: Any, telegram_id: int) -> Limits:
        """`overrides` inside the caller's transaction."""
        c = USER_LIMIT_TABLE.c
        row = conn.execute(
            select(c.messages_per_day, c.tokens_per_day).where(c.telegram_id == telegram_id)
        ).first()
        return Limits(row.messages_per_day, row.tokens_per_day) if row else Limits()

    @staticmethod
    def write_overrides(conn: Any, engine: Engine, telegram_id: int, limits: Limits) -> None:
        """Store (or, with no limit left, remove) a user's overrides in `conn`'s transaction."""
        if not limits.limited:
            conn.execute(
                delete(USER_LIMIT_TABLE).where(USER_LIMIT_TABLE.c.telegram_id == telegram_id)
            )
            return
        values = {
            "messages_per_day": limits.messages_per_day,
            "tokens_per_day": limits.tokens_per_day,
        }
        stmt = insert_for(engine, USER_LIMIT_TABLE).values(telegram_id=telegram_id, **values)
        conn.execute(stmt.on_conflict_do_update(index_elements=["telegram_id"], set_=values))

    def used(self, telegram_id: int, day: date) -> tuple[int, int]:
        """(messages, tokens) counted against the user's quota on `day`."""
        q = QUOTA_DAY_TABLE.c
        with transaction(self.engine) as conn:
            row = conn.execute(
                select(q.messages, q.tokens).where(q.telegram_id == telegram_id, q.day == day)
            ).first()
        return (int(row.messages), int(row.tokens)) if row else (0, 0)

    def _statement(self) -> Any:
        if self._admit is None:
            from sqlalchemy import bindparam

            stmt = insert_for(self.engine, QUOTA_DAY_TABLE)
            q = QUOTA_DAY_TABLE.c
            self._admit = stmt.on_conflict_do_update(
                index_elements=["telegram_id", "day"],
                set_={"messages": q.messages + 1, "tokens": q.tokens + stmt.excluded.tokens},
                where=(q.messages < bindparam("max_messages"))
                & (q.tokens < bindparam("max_tokens")),
            ).returning(q.messages)
        return self._admit

    def admit(self, telegram_id: int, limits: Limits, *, tokens: int, now: datetime) -> Reservation:
        """Count one message (and `tokens` expected) against today's limits, or refuse it."""
        day = day_of(now)
        max_messages = _cap(limits.messages_per_day, _NO_MESSAGE_LIMIT)
        max_tokens = _cap(limits.tokens_per_day, _NO_TOKEN_LIMIT)
        admitted = max_messages > 0 and max_tokens > 0
        if admitted:
            with transaction(self.engine, write=True) as conn:
                admitted = (
                    conn.execute(
                        self._statement(),
                        {
                            "telegram_id": telegram_id,
                            "day": day,
                            "messages": 1,
                            "tokens": tokens,
                            "max_messages": max_messages,
                            "max_tokens": max_tokens,
                        },
                    ).first()
                    is not None
                )
        if not admitted:
            raise self._refusal(telegram_id, limits, day, now)
        return Reservation(telegram_id, day, tokens)

    def take_tool_call(self, telegram_id: int, limit: int, now: datetime) -> bool:
        """Count one tool call against the user's `limit` for today; False (nothing
        counted) when today's calls already reached it. One conditional upsert."""
        if limit <= 0:
            return False
        q = QUOTA_DAY_TABLE.c
        stmt = insert_for(self.engine, QUOTA_DAY_TABLE).values(
            telegram_id=telegram_id, day=day_of(now), messages=0, tokens=0, tool_calls=1
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["telegram_id", "day"],
            set_={"tool_calls": q.tool_calls + 1},
            where=q.tool_calls < min(limit, _NO_MESSAGE_LIMIT),
        ).returning(q.tool_calls)
        with transaction(self.engine, write=True) as conn:
            return conn.execute(stmt).first() is not None

    def refund(self, reservation: Reservation) -> None:
        """Give back an admitted message that got no answer."""
        q = QUOTA_DAY_TABLE.c
        with transaction(self.engine, write=True) as conn:
            conn.execute(
                QUOTA_DAY_TABLE.update()
                .where(q.telegram_id == reservation.telegram_id, q.day == reservation.day)
                .values(messages=q.messages - 1, tokens=q.tokens - reservation.tokens)
            )

    def _refusal(self, telegram_id: int, limits: Limits, day: date, now: datetime) -> QuotaExceeded:
        messages, _tokens = self.used(telegram_id, day)
        if limits.messages_per_day is not None and messages >= limits.messages_per_day:
            what = f"{limits.messages_per_day} messages"
        else:
            what = f"{limits.tokens_per_day} tokens"
        moment = resets_at(day)
        return QuotaExceeded(
            f"user {telegram_id} has used today's quota of {what}; it resets at "
            f"{moment:%Y-%m-%d %H:%M} UTC (in {_until(moment, now)})",
            resets_at=moment,
        )


def _cap(limit: int | None, unlimited: int) -> int:
    return unlimited if limit is None else min(limit, unlimited)
