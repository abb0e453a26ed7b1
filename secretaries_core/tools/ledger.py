"""The tool-call ledger: each call of a turn recorded as it starts and as its result arrives.

A turn that calls tools may be answered again — a worker killed between rounds, a
redelivered update, an interrupt — and a tool with side effects must not run twice. So,
before the next model round, the ledger holds for each round:

- `round:<turn>:<r>`: the assistant message that asked for the calls (the model is not
  asked that round again: a new answer could ask for other calls under the same ids),
  and which of them are about to be sent (`started`: they all start at once, so one
  entry says both);
- `start:<call id>`: a call sent later than its round (after the user's approval, or a
  read-only call sent again), written just before it is sent;
- `result:<call id>`: the result, as it arrived;
- `decision:<call id>`: the user's decision on a `--confirm` call (approved, denied,
  timeout), written once: the first of a press and a timeout wins.

Answered again, a turn replays its stored rounds: a stored result is reused; a call that
started but left no result (the worker died while it ran) is not sent again — the model
is told its outcome is unknown — unless the tool is `--read-only`.

The ledger lives in the context store itself, as one extra context per (user, secretary)
under an id derived from the secretary's (`ledger_id`): every backend then gives it what
a turn's writes get — one write per entry id (the store's turn guard), the user's fences
(a call recorded after the user was erased is refused), erasure with the user's contexts,
and a TTL (a day: longer than any turn can be retried).
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from secretaries_core.context.base import ContextPolicy, ContextStore, Message

if TYPE_CHECKING:
    from secretaries_core.llm.base import ToolCall

# The first bytes of every ledger id: tells a ledger from a secretary's context.
_MARK = bytes.fromhex("7e5c7a11ed9e")
LEDGER_ROLE = "ledger"
LEDGER_POLICY = ContextPolicy(ttl=timedelta(days=1), max_messages=1000)
# A turn's entries are among the newest when it is answered again: a user's messages are
# answered in order, so a redelivery comes before their later turns write more. Reading
# only these keeps the read's cost flat however many calls the user made today.
READ_ENTRIES = 256
_ENTRY_KEY = "update_id"  # the key the stores' turn guards write once per value


@functools.lru_cache(maxsize=1024)  # one per secretary: each ledger write asks for it
def ledger_id(secretary_id: uuid.UUID) -> uuid.UUID:
    """The id under which a secretary's tool calls are kept (one ledger per user)."""
    digest = hashlib.sha256(b"secretaries-tool-ledger:" + secretary_id.bytes).digest()
    return uuid.UUID(bytes=_MARK + digest[: 16 - len(_MARK)])


def is_ledger(context_id: uuid.UUID) -> bool:
    """True for a ledger's id (see `ledger_id`)."""
    return context_id.bytes.startswith(_MARK)


def same_call(name: str, arguments: str) -> tuple[str, str]:
    """A call's function and arguments in one canonical form (key order, spacing)."""
    try:
        found = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return name, arguments
    return name, json.dumps(found, sort_keys=True, ensure_ascii=False)


@dataclass
class TurnLedger:
    """What the ledger holds for one turn: its rounds' calls, started calls, results, and
    (in this process) the calls still running, by `same_call`."""

    rounds: dict[int, list[ToolCall]] = field(default_factory=dict)
    started: set[str] = field(default_factory=set)
    results: dict[str, tuple[str, bool]] = field(default_factory=dict)
    decisions: dict[str, str] = field(default_factory=dict)
    running: dict[tuple[str, str], Any] = field(default_factory=dict)
    turn: str = ""  # the call ids' turn part

    def earlier(self, name: str, arguments: str) -> Any:
        """What this turn knows of the same call: its result `(text, ok)`, the running
        call (an awaitable), "started" (sent, outcome unknown), or None."""
        wanted = same_call(name, arguments)
        if wanted in self.running:
            return self.running[wanted]
        for number, calls in self.rounds.items():
            for i, call in enumerate(calls):
                if same_call(call.name, call.arguments) != wanted:
                    continue
                call_id = f"{self.turn}:{number}:{i}"
                if call_id in self.results:
                    return self.results[call_id]
                if call_id in self.started:
                    return "started"
        return None


class ToolLedger:
    """Reads and writes one turn's ledger entries through a context store."""

    def __init__(self, store: ContextStore) -> None:
        self.store = store

    async def read(self, user_id: int, secretary_id: uuid.UUID, turn: str) -> TurnLedger:
        """The entries of `turn` (empty for a turn answered the first time)."""
        # Imported here: `ledger_id` is read by commands that never meet a model.
        from secretaries_core.llm.base import ToolCall

        found = TurnLedger(turn=turn)
        prefix = f":{turn}:"
        newest = await self.store.aread(user_id, ledger_id(secretary_id), READ_ENTRIES)
        for message in newest:
            entry = str((message.metadata or {}).get(_ENTRY_KEY) or "")
            kind, _, rest = entry.partition(":")
            if not (":" + rest).startswith(prefix):
                continue
            body = json.loads(message.content)
            if kind == "round":
                number = int(body["round"])
                found.rounds[number] = [
                    ToolCall(c["id"], c["name"], c["arguments"]) for c in body["calls"]
                ]
                found.started.update(f"{turn}:{number}:{i}" for i in body.get("started", ()))
            elif kind == "start":
                found.started.add(rest)
            elif kind == "result":
                found.results[rest] = (str(body["text"]), bool(body["ok"]))
            elif kind == "decision":
                found.decisions[rest] = str(body["decision"])
        return found

    async def decision(self, user_id: int, secretary_id: uuid.UUID, call_id: str) -> str | None:
        """The decision kept for `call_id`, if any."""
        turn = call_id.rsplit(":", 2)[0]
        return (await self.read(user_id, secretary_id, turn)).decisions.get(call_id)

    async def write_round(
        self,
        user_id: int,
        secretary_id: uuid.UUID,
        turn: str,
        number: int,
        calls: list[ToolCall],
        since: float,
        at: datetime,
        unsent: frozenset[int] = frozenset(),
    ) -> None:
        """Record the calls the model asked for in round `number`, and — in the same
        entry, since they all start at once — that each is about to be sent (but those in
        `unsent`: calls waiting for the user's approval record their start when sent)."""
        body = {
            "round": number,
            "calls": [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls],
            "started": [i for i in range(len(calls)) if i not in unsent],
        }
        await self._write(user_id, secretary_id, [(f"round:{turn}:{number}", body)], since, at)

    async def write_decision(
        self,
        user_id: int,
        secretary_id: uuid.UUID,
        call_id: str,
        decision: str,
        since: float,
        at: datetime,
    ) -> None:
        """Keep the user's decision on `call_id` (a second one is ignored: read it back)."""
        body = {"decision": decision}
        await self._write(user_id, secretary_id, [(f"decision:{call_id}", body)], since, at)

    async def write_start(
        self, user_id: int, secretary_id: uuid.UUID, call_id: str, since: float, at: datetime
    ) -> None:
        """Record that `call_id` is about to be sent."""
        await self._write(user_id, secretary_id, [(f"start:{call_id}", {})], since, at)

    async def write_result(
        self,
        user_id: int,
        secretary_id: uuid.UUID,
        call_id: str,
        text: str,
        ok: bool,
        since: float,
        at: datetime,
    ) -> None:
        """Record what `call_id` returned."""
        body = {"text": text, "ok": ok}
        await self._write(user_id, secretary_id, [(f"result:{call_id}", body)], since, at)

    async def _write(
        self,
        user_id: int,
        secretary_id: uuid.UUID,
        entries: list[tuple[str, dict[str, Any]]],
        since: float,
        at: datetime,
    ) -> None:
        # One write: the store's turn guard keys it by its first entry (written once).
        context = ledger_id(secretary_id)
        items = [
            (
                user_id,
                context,
                Message(LEDGER_ROLE, json.dumps(body, ensure_ascii=False), at, {_ENTRY_KEY: entry}),
            )
            for entry, body in entries
        ]
        await self.store.aappend_many(items, policy=LEDGER_POLICY, since=since)
