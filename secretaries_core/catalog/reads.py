"""The catalog's hottest reads on SQLAlchemy Core alone, answered as SPEC.md's JSON documents.

`list`, `show` and `current` from the CLI, and `GET /api/users/{id}/secretary`, are one
or two queries each; loading the ORM, SQLModel and pydantic to run them cost more than
the queries (a CLI start-up of 0.6 s against 0.24 s for `import sqlalchemy`; a REST
resolution at 5x a bare endpoint). Here they run on Core table *views* — the columns
these reads use, on a private MetaData, checked against the real tables by the tests —
and come back as plain JSON-ready documents, formatted as pydantic formats them.

Only the answer is built here. A read that fails (no such user, no default, two users
with one username…) raises `Miss`, and the caller asks the registry, whose error is the
contract's: one implementation of every refusal.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal, Protocol, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
    and_,
    bindparam,
    func,
    literal,
    select,
)

from secretaries_core.catalog.refs import (
    SECRETARY_NAME_RE,
    UserRef,
    normalize_username,
)
from secretaries_core.catalog.rollout_hash import chosen_version
from secretaries_core.errors import InvalidInput
from secretaries_core.plumbing.timeutil import UTCDateTime

_views = MetaData()
SECRETARY = Table(
    "assistant",
    _views,
    Column("id", Uuid, primary_key=True),
    Column("name", String),
    Column("description", Text),
    Column("model", String),
    Column("prompt", Text),
    Column("params", JSON),
    Column("is_secretary", Boolean),
    Column("is_active", Boolean),
    Column("is_default", Boolean),
    Column("version", Integer),
    Column("created_at", UTCDateTime()),
    Column("updated_at", UTCDateTime()),
)
USER = Table(
    "telegramuser",
    _views,
    Column("id", Integer, primary_key=True),
    Column("telegram_id", BigInteger),
    Column("username", String),
    Column("created_at", UTCDateTime()),
    Column("updated_at", UTCDateTime()),
)
LINK = Table(
    "usersecretarylink",
    _views,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Integer),
    Column("secretary_id", Uuid),
    Column("is_active", Boolean),
    Column("created_at", UTCDateTime()),
    Column("updated_at", UTCDateTime()),
)
VERSION = Table(
    "secretary_version",
    _views,
    Column("secretary_id", Uuid, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("model", String),
    Column("prompt", Text),
    Column("params", JSON),
    Column("note", Text),
    Column("state", String),
    Column("created_at", UTCDateTime()),
)
EVAL = Table(
    "version_eval",
    _views,
    Column("secretary_id", Uuid, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("passed", Integer),
    Column("failed", Integer),
    Column("content", String),
    Column("failures", JSON),
    Column("at", UTCDateTime()),
)
ROLLOUT = Table(
    "rollout",
    _views,
    Column("id", Uuid, primary_key=True),
    Column("secretary_id", Uuid),
    Column("live_version", Integer),
    Column("candidate_version", Integer),
    Column("percent", Integer),
    Column("state", String),
    Column("max_error_rate", Float),
    Column("max_dislike_rate", Float),
    Column("min_messages", Integer),
    Column("started_at", UTCDateTime()),
    Column("ended_at", UTCDateTime()),
    Column("reason", Text),
    Column("judge_rubric", Text),
    Column("judge_model", String),
    Column("judge_sample", Float),
    Column("max_judge_fail_rate", Float),
)
COUNT = Table(
    "version_count",
    _views,
    Column("secretary_id", Uuid, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("period", String, primary_key=True),
    Column("messages", Integer),
    Column("errors", Integer),
    Column("prompt_tokens", BigInteger),
    Column("completion_tokens", BigInteger),
    Column("likes", Integer),
    Column("dislikes", Integer),
    Column("judged", Integer),
    Column("judge_failed", Integer),
)
PIN = Table(
    "version_pin",
    _views,
    Column("user_id", Integer, primary_key=True),
    Column("secretary_id", Uuid, primary_key=True),
    Column("version", Integer),
    Column("created_at", UTCDateTime()),
)
REPLY_REF = Table(
    "reply_ref",
    _views,
    Column("telegram_id", BigInteger, primary_key=True),
    Column("message_id", BigInteger, primary_key=True),
    Column("secretary_id", Uuid),
    Column("version", Integer),
    Column("created_at", UTCDateTime()),
)
VIEWS = (SECRETARY, USER, LINK, VERSION, EVAL, ROLLOUT, COUNT, PIN, REPLY_REF)

_SUMMARY = (
    SECRETARY.c.id,
    SECRETARY.c.name,
    SECRETARY.c.description,
    SECRETARY.c.model,
    SECRETARY.c.params,
    SECRETARY.c.is_active,
    SECRETARY.c.is_default,
    SECRETARY.c.version,
    SECRETARY.c.is_secretary,
)


VersionState = Literal["live", "candidate", "draft", "retired"]


class Miss(Exception):
    """This read cannot answer (an unknown name, no default…): ask the registry instead."""


@dataclass(frozen=True)
class CurrentRead:
    """`current`'s document, and the model of the version served (for the CLI's line)."""

    document: dict[str, Any]
    model: str


def stamp(at: datetime) -> str:
    """A timestamp as the JSON documents carry it (pydantic's format: UTC as `Z`)."""
    text = at.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _users_of(secretary_id: Any) -> Any:
    counted = LINK.alias("counted")
    return (
        select(func.count())
        .where(counted.c.secretary_id == secretary_id, counted.c.is_active)
        .scalar_subquery()
    )


def _summary(values: Mapping[Any, Any], users: int) -> dict[str, Any]:
    """SecretaryOut's document, in its field order."""
    return {
        "id": str(values["id"]),
        "name": values["name"],
        "description": values["description"],
        "model": values["model"],
        "params": dict(values["params"]),
        "is_active": values["is_active"],
        "is_default": values["is_default"],
        "version": values["version"],
        "users": users,
        "is_secretary": values["is_secretary"],
    }


_LIST = select(*_SUMMARY, _users_of(SECRETARY.c.id)).where(SECRETARY.c.is_secretary)


def list_secretaries(conn: Connection, *, include_inactive: bool = False) -> list[dict[str, Any]]:
    """The catalog ordered by name, each with its count of active links (`list --json`)."""
    query = _LIST if include_inactive else _LIST.where(SECRETARY.c.is_active)
    rows = conn.execute(query.order_by(SECRETARY.c.name)).all()
    return [_summary(row._mapping, row[-1]) for row in rows]


_DETAIL = select(
    *_SUMMARY,
    SECRETARY.c.prompt,
    SECRETARY.c.created_at,
    SECRETARY.c.updated_at,
    _users_of(SECRETARY.c.id),
)


def _named(ref: str | uuid.UUID) -> Any:
    """The secretary `ref` names: its id when it parses as one, else its name (as the
    registry looks it up)."""
    try:
        return SECRETARY.c.id == (ref if isinstance(ref, uuid.UUID) else uuid.UUID(ref))
    except ValueError:
        return SECRETARY.c.name == ref


def _secretary(conn: Any, ref: str | uuid.UUID, *columns: Any) -> Any:
    """`columns` of the secretary `ref` names; `Miss` when there is none."""
    row = conn.execute(select(*columns).where(_named(ref))).one_or_none()
    if row is None:
        raise Miss(ref)
    return row


def secretary_detail(conn: Connection, ref: str) -> dict[str, Any]:
    """One secretary by name or id, with its prompt and timestamps (`show --json`)."""
    row = conn.execute(_DETAIL.where(_named(ref))).one_or_none()
    if row is None:
        raise Miss(ref)
    return {
        **_summary(row._mapping, row[-1]),
        "prompt": row.prompt,
        "created_at": stamp(row.created_at),
        "updated_at": stamp(row.updated_at),
    }


def _resolution(by_name: bool) -> Any:
    mine, fallback = SECRETARY.alias("mine"), SECRETARY.alias("fallback")
    link = LINK.alias("l")
    who = (
        func.lower(USER.c.username) == bindparam("ref")
        if by_name
        else USER.c.telegram_id == bindparam("ref")
    )
    columns: list[Any] = [USER.c.id, USER.c.telegram_id, USER.c.username]
    for side in (mine, fallback):
        columns += [c.label(f"{side.name}_{c.name}") for c in (side.c[k.name] for k in _SUMMARY)]
        columns.append(side.c.prompt.label(f"{side.name}_prompt"))
        columns.append(_users_of(side.c.id).label(f"{side.name}_users"))
    return (
        select(*columns)
        .outerjoin(link, (link.c.user_id == USER.c.id) & link.c.is_active)
        .outerjoin(mine, mine.c.id == link.c.secretary_id)
        .outerjoin(
            fallback,
            fallback.c.is_default & fallback.c.is_active & fallback.c.is_secretary,
        )
        .where(who)
        .limit(2)
    )


_RESOLUTION = {by_name: _resolution(by_name) for by_name in (False, True)}
# The user's pin on the secretary and the secretary's running rollout, in one query (the
# registry's too: one definition of which version a user gets).
SERVED_MARKS = select(
    select(PIN.c.version)
    .where(PIN.c.user_id == bindparam("u"), PIN.c.secretary_id == bindparam("s"))
    .scalar_subquery(),
    ROLLOUT.c.id,
    ROLLOUT.c.percent,
    ROLLOUT.c.candidate_version,
).select_from(
    select(literal(1).label("one"))
    .subquery()
    .outerjoin(
        ROLLOUT,
        and_(ROLLOUT.c.secretary_id == bindparam("s"), ROLLOUT.c.state == "running"),
    )
)
VersionSource = Literal["live", "rollout", "pinned"]
Source = Literal["assigned", "default", "fallback"]


class SecretaryFacts(Protocol):
    """What the message path reads of a secretary row (an ORM row or a Core row)."""

    @property
    def id(self) -> uuid.UUID:
        """Its id."""

    @property
    def name(self) -> str:
        """Its unique name."""

    @property
    def model(self) -> str:
        """The live version's model."""

    @property
    def prompt(self) -> str:
        """The live version's prompt."""

    @property
    def params(self) -> dict[str, Any]:
        """The live version's params."""

    @property
    def version(self) -> int:
        """The live version's number."""

    @property
    def is_active(self) -> bool:
        """Whether it answers anyone."""


@dataclass(frozen=True)
class Served:
    """What a user gets of a secretary: a version's content, its number and why."""

    version: int
    model: str
    prompt: str
    params: dict[str, Any]
    source: VersionSource
    rollout: uuid.UUID | None = None


def served(conn: Any, user_id: int, telegram_id: int, secretary: SecretaryFacts) -> Served:
    """The version of `secretary` the user gets: their pin, else a rollout's side, else live."""
    # One round trip in the common case (no pin, no rollout): both looked up at once.
    marks = conn.execute(SERVED_MARKS, {"u": user_id, "s": secretary.id}).first()
    values: tuple[Any, ...] = tuple(marks) if marks is not None else (None,) * 4
    rollout_id = values[1]
    live = Served(
        secretary.version,
        secretary.model,
        secretary.prompt,
        dict(secretary.params),
        "live",
        rollout_id,
    )
    wanted, source = chosen_version(telegram_id, secretary.id, secretary.version, values)
    if source == "pinned":
        rollout_id = None
    if wanted is None:
        return live if source == "live" else replace(live, source="pinned", rollout=None)
    row = conn.execute(
        select(VERSION).where(VERSION.c.secretary_id == secretary.id, VERSION.c.version == wanted)
    ).first()
    if row is None:
        return live  # the version is gone: the live one is served
    return Served(
        row.version, row.model, row.prompt, dict(row.params), cast(Any, source), rollout_id
    )


@dataclass(frozen=True)
class SideFacts:
    """One secretary's columns of a resolution row (`mine_*` or `fallback_*`)."""

    id: uuid.UUID
    name: str
    model: str
    prompt: str
    params: dict[str, Any]
    version: int
    is_active: bool


def side_facts(row: Any, side: str) -> SideFacts:
    """The facts of one side of a resolution row (a side `chosen_side` named)."""
    mapping = row._mapping
    return SideFacts(*(mapping[f"{side}_{field}"] for field in SideFacts.__dataclass_fields__))


def chosen_side(row: Any) -> tuple[str, Source] | None:
    """Which side of a resolution row answers the user, and why: their link's secretary
    while it is active, else the default; None when there is neither."""
    mapping = row._mapping
    if mapping["mine_id"] is not None and mapping["mine_is_active"]:
        return "mine", "assigned"
    if mapping["fallback_id"] is None:
        return None
    return "fallback", "default" if mapping["mine_id"] is None else "fallback"


def _side(row: Any, side: str) -> dict[str, Any]:
    mapping = row._mapping
    values = {k.name: mapping[f"{side}_{k.name}"] for k in _SUMMARY}
    return _summary(values, mapping[f"{side}_users"])


def _user_value(user_ref: UserRef) -> tuple[bool, Any]:
    """`user_key`, with `Miss` for a reference that cannot be a username (the registry
    says what is wrong with it)."""
    try:
        return user_key(user_ref)
    except InvalidInput:
        raise Miss(user_ref) from None


def user_key(user_ref: UserRef) -> tuple[bool, Any]:
    """(by name?, the value a resolution query matches): a Telegram id, or a checked
    username in lower case (`InvalidInput` for one that cannot be a username)."""
    if isinstance(user_ref, int):
        return False, user_ref
    return True, (normalize_username(str(user_ref)) or "").lower()


def resolution_rows(conn: Any, user_ref: UserRef) -> list[Any]:
    """The resolution query's rows for a user: none (unknown), one, or two (a username two
    users share); each with both sides (`mine_*`, `fallback_*`) and their prompts."""
    by_name, value = user_key(user_ref)
    return list(conn.execute(_RESOLUTION[by_name], {"ref": value}).all())


def current(conn: Connection, user_ref: UserRef) -> CurrentRead:
    """The user's resolved secretary, its source and the version served (`current --json`)."""
    by_name, value = _user_value(user_ref)
    rows = conn.execute(_RESOLUTION[by_name], {"ref": value}).all()
    if len(rows) != 1:
        raise Miss(user_ref)  # unknown, or a username two users share
    row = rows[0]
    chosen = chosen_side(row)
    if chosen is None:
        raise Miss(user_ref)  # no secretary at all: the registry says what to do
    side, source = chosen
    version = served(conn, row.id, row.telegram_id, side_facts(row, side))
    document = {
        "user": {"telegram_id": row.telegram_id, "username": row.username},
        "secretary": _side(row, side),
        "source": source,
        "version": version.version,
        "version_source": version.source,
    }
    return CurrentRead(document, version.model)


@dataclass(frozen=True)
class EvalRecord:
    """The latest eval of one version."""

    passed: int
    failed: int
    at: datetime
    content: str
    failures: list[str]

    def doc(self) -> dict[str, Any]:
        """`versions --json` `eval`: `{"passed", "failed", "at"}`."""
        return {"passed": self.passed, "failed": self.failed, "at": self.at.isoformat()}


@dataclass(frozen=True)
class VersionInfo:
    """One version of a secretary (`versions --json` item)."""

    version: int
    model: str
    prompt: str
    params: dict[str, Any]
    note: str | None
    created_at: datetime
    state: VersionState
    eval: EvalRecord | None = None

    def doc(self) -> dict[str, Any]:
        """The SPEC's JSON shape."""
        return {
            "version": self.version,
            "model": self.model,
            "prompt": self.prompt,
            "params": self.params,
            "note": self.note,
            "created_at": self.created_at.isoformat(),
            "state": self.state,
            "eval": self.eval.doc() if self.eval is not None else None,
        }


def latest_evals(conn: Any, secretary_id: uuid.UUID) -> dict[int, EvalRecord]:
    """The latest eval of each of the secretary's versions, by version (`conn`: a
    Connection or an ORM Session)."""
    rows = conn.execute(select(EVAL).where(EVAL.c.secretary_id == secretary_id))
    return {
        r.version: EvalRecord(r.passed, r.failed, r.at, r.content, list(r.failures)) for r in rows
    }


_CANDIDATE = select(ROLLOUT.c.candidate_version).where(
    ROLLOUT.c.secretary_id == bindparam("s"), ROLLOUT.c.state == "running"
)


def version_list(conn: Any, secretary_id: uuid.UUID, live: int) -> list[VersionInfo]:
    """Every version of the secretary, newest first, with its state: the live one (the
    secretary's `version`), the running rollout's candidate, else what the row says
    (`conn`: a Connection or an ORM Session). The registry's `versions` and the CLI's
    quick read both answer with it."""
    candidate = conn.execute(_CANDIDATE, {"s": secretary_id}).scalar()
    evals = latest_evals(conn, secretary_id)
    rows = conn.execute(
        select(VERSION)
        .where(VERSION.c.secretary_id == secretary_id)
        .order_by(VERSION.c.version.desc())
    ).all()
    out = []
    for row in rows:
        state: VersionState = row.state
        if row.version == live:
            state = "live"
        elif candidate is not None and row.version == candidate:
            state = "candidate"
        elif state in ("live", "candidate"):
            state = "retired" if row.version < live else "draft"
        out.append(
            VersionInfo(
                row.version,
                row.model,
                row.prompt,
                dict(row.params),
                row.note,
                row.created_at,
                state,
                evals.get(row.version),
            )
        )
    return out


def versions(conn: Connection, ref: str) -> list[VersionInfo]:
    """`versions SEC`: the secretary's versions by name or id. `Miss` when there is no such
    secretary, or its live version has no row yet (the registry writes it first)."""
    row = _secretary(conn, ref, SECRETARY.c.id, SECRETARY.c.version)
    found = version_list(conn, row.id, row.version)
    if not any(v.version == row.version for v in found):
        raise Miss(ref)
    return found


def secretary_id(conn: Any, ref: str | uuid.UUID) -> uuid.UUID:
    """The id of the secretary (or assistant) named or numbered `ref`; `Miss` when none."""
    found: uuid.UUID = _secretary(conn, ref, SECRETARY.c.id).id
    return found


def user_page(
    conn: Any, secretary: uuid.UUID | None, limit: int | None, offset: int
) -> list[tuple[int, str | None, datetime, str | None]]:
    """`users list`: (Telegram id, username, registered, secretary of the active link) by
    Telegram id, only the users linked to `secretary` if given, paged in the database."""
    query = (
        select(USER.c.telegram_id, USER.c.username, USER.c.created_at, SECRETARY.c.name)
        .select_from(USER)
        .outerjoin(LINK, (LINK.c.user_id == USER.c.id) & LINK.c.is_active)
        .outerjoin(SECRETARY, SECRETARY.c.id == LINK.c.secretary_id)
        .order_by(USER.c.telegram_id)
    )
    if secretary is not None:
        query = query.where(LINK.c.secretary_id == secretary)
    if offset:
        query = query.offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return [(r[0], r[1], r[2], r[3]) for r in conn.execute(query)]


def users_page_documents(rows: list[tuple[int, str | None, datetime, str | None]]) -> list[Any]:
    """`users list --json`: UserListItem's documents, in its field order."""
    return [
        {"telegram_id": t, "username": u, "secretary": s, "created_at": stamp(at)}
        for t, u, at, s in rows
    ]


def user_row_id(conn: Any, user_ref: UserRef) -> int:
    """The row id of the one user `user_ref` names; `Miss` for none, or a username two
    users share (the registry says which)."""
    by_name, value = _user_value(user_ref)
    who = func.lower(USER.c.username) == value if by_name else USER.c.telegram_id == value
    rows = conn.execute(select(USER.c.id).where(who).limit(2)).all()
    if len(rows) != 1:
        raise Miss(user_ref)
    return int(rows[0][0])


def link_history(conn: Any, user_id: int) -> list[tuple[uuid.UUID, str, bool, datetime, datetime]]:
    """`history`: the user's links, newest first: (secretary id, its name, active,
    since, last change)."""
    rows = conn.execute(
        select(
            LINK.c.secretary_id,
            SECRETARY.c.name,
            LINK.c.is_active,
            LINK.c.created_at,
            LINK.c.updated_at,
        )
        .join(SECRETARY, SECRETARY.c.id == LINK.c.secretary_id)
        .where(LINK.c.user_id == user_id)
        .order_by(LINK.c.created_at.desc(), LINK.c.is_active.desc())
    )
    return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]


def history_documents(rows: list[tuple[uuid.UUID, str, bool, datetime, datetime]]) -> list[Any]:
    """`history --json`: LinkOut's documents, in its field order."""
    return [
        {
            "secretary_id": str(sid),
            "secretary": name,
            "is_active": active,
            "created_at": stamp(since),
            "updated_at": stamp(changed),
        }
        for sid, name, active, since, changed in rows
    ]


def prompt_diff(old: str, new: str, old_name: str, new_name: str) -> str:
    """Two prompts as a unified diff (empty when they are the same)."""
    import difflib

    lines = difflib.unified_diff(
        old.splitlines(), new.splitlines(), fromfile=old_name, tofile=new_name, lineterm=""
    )
    return "\n".join(lines)


def diff_document(name: str, v1: int, v2: int, a: Any, b: Any) -> dict[str, Any]:
    """`diff SEC V1 V2 --json`: what changed from version row `a` (V1) to `b` (V2)."""
    params: dict[str, Any] = {}
    for key in sorted(set(a.params) | set(b.params)):
        if a.params.get(key) != b.params.get(key):
            params[key] = {"from": a.params.get(key), "to": b.params.get(key)}
    return {
        "from": v1,
        "to": v2,
        "model": {"from": a.model, "to": b.model} if a.model != b.model else None,
        "params": params,
        "prompt_diff": prompt_diff(a.prompt, b.prompt, f"{name} v{v1}", f"{name} v{v2}"),
    }


def diff(conn: Connection, ref: str, v1: int, v2: int) -> dict[str, Any]:
    """`diff SEC V1 V2`; `Miss` when the secretary or either version row is not there (the
    registry then writes a missing live row, or says which version does not exist)."""
    secretary = _secretary(conn, ref, SECRETARY.c.id, SECRETARY.c.name)
    rows = {
        row.version: row
        for row in conn.execute(
            select(VERSION).where(
                VERSION.c.secretary_id == secretary.id, VERSION.c.version.in_((v1, v2))
            )
        )
    }
    if v1 not in rows or v2 not in rows:
        raise Miss(ref)
    return diff_document(secretary.name, v1, v2, rows[v1], rows[v2])


def judge_fail_rate(row: Any) -> float:
    """Failed verdicts per judged reply of a counts row (0 without any)."""
    judged = int(getattr(row, "judged", 0) or 0) if row is not None else 0
    return int(row.judge_failed or 0) / judged if judged else 0.0


def error_rate(row: Any) -> float:
    """Errors per message of a counts row (0 without messages or without a row)."""
    return row.errors / row.messages if row is not None and row.messages else 0.0


def dislike_rate(row: Any) -> float:
    """Dislikes per vote of a counts row (0 without votes or without a row)."""
    votes = (row.likes + row.dislikes) if row is not None else 0
    return row.dislikes / votes if votes else 0.0


def side(version: int, row: Any) -> dict[str, Any]:
    """One side of `rollout status`: a version's counts over the rollout's life."""
    messages = int(row.messages) if row is not None else 0
    errors = int(row.errors) if row is not None else 0
    likes = int(row.likes) if row is not None else 0
    dislikes = int(row.dislikes) if row is not None else 0
    return {
        "version": version,
        "messages": messages,
        "errors": errors,
        "error_rate": round(error_rate(row), 4),
        "likes": likes,
        "dislikes": dislikes,
        "dislike_rate": round(dislike_rate(row), 4),
        "judged": int(getattr(row, "judged", 0) or 0) if row is not None else 0,
        "judge_fail_rate": round(judge_fail_rate(row), 4),
        "prompt_tokens": int(row.prompt_tokens) if row is not None else 0,
        "completion_tokens": int(row.completion_tokens) if row is not None else 0,
    }


def rollout_document(conn: Any, secretary_id: uuid.UUID, name: str) -> dict[str, Any] | None:
    """`rollout status --json`: the secretary's newest rollout with both sides' counts over
    its life, or None when it never had one (`conn`: a Connection or an ORM Session)."""
    rollout = conn.execute(
        select(ROLLOUT)
        .where(ROLLOUT.c.secretary_id == secretary_id)
        .order_by(ROLLOUT.c.started_at.desc())
        .limit(1)
    ).first()
    if rollout is None:
        return None
    counts = {
        row.version: row
        for row in conn.execute(
            select(COUNT).where(
                COUNT.c.secretary_id == secretary_id, COUNT.c.period == rollout.id.hex
            )
        )
    }
    live, candidate = rollout.live_version, rollout.candidate_version
    return {
        "secretary": name,
        "state": rollout.state,
        "percent": rollout.percent,
        "live": side(live, counts.get(live)),
        "candidate": side(candidate, counts.get(candidate)),
        "max_error_rate": rollout.max_error_rate,
        "max_dislike_rate": rollout.max_dislike_rate,
        "min_messages": rollout.min_messages,
        "judge": rollout.judge_rubric,
        "judge_sample": rollout.judge_sample,
        "max_judge_fail_rate": rollout.max_judge_fail_rate,
        "started_at": rollout.started_at.isoformat(),
        "ended_at": rollout.ended_at.isoformat() if rollout.ended_at else None,
        "reason": rollout.reason,
    }


def rollout_status(conn: Connection, ref: str) -> dict[str, Any]:
    """`rollout status SEC`; `Miss` without such a secretary or any rollout of it."""
    secretary = _secretary(conn, ref, SECRETARY.c.id, SECRETARY.c.name)
    found = rollout_document(conn, secretary.id, secretary.name)
    if found is None:
        raise Miss(ref)
    return found


def nonconforming_names(conn: Any) -> list[str]:
    """Secretaries whose name breaks today's rules (kept as they are), one line each."""
    rows = conn.execute(select(SECRETARY.c.name)).all()
    problems: list[str] = []
    seen: dict[str, str] = {}
    for (name,) in rows:
        if not SECRETARY_NAME_RE.fullmatch(name):
            problems.append(f"{name!r}: not 1-64 ASCII letters, digits, '-', '_' or '.'")
        other = seen.get(name.lower())
        if other is not None:
            problems.append(f"{name!r}: the same name as {other!r} regardless of case")
        seen[name.lower()] = name
    return problems


def catalog_rows(conn: Any) -> list[Any]:
    """Every secretary and assistant, active or not, by name (`export`, `plan`)."""
    return list(conn.execute(select(SECRETARY).order_by(SECRETARY.c.name)).all())
