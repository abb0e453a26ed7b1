"""Stage "tools": the model's function calls run between its rounds, each exactly once.

The secretary's version names its tools (param `tools`); they are offered as OpenAI
`tools` — an HTTP function as `NAME`, an MCP server's tools as `NAME__TOOL`. When the
model answers with `tool_calls`, the round's calls run concurrently, each under its own
timeout (`--timeout`, else the version's `tool_timeout`) inside the message deadline; each
result, or a one-line error, goes back as a `tool` message, and the model is asked again —
until it answers with text, or after `max_tool_rounds` rounds once more with
`tool_choice: "none"`. A failing tool never fails the turn.

A queued message's calls go through the ledger (tools/ledger.py): the round's calls are
recorded before they run, each call as it starts and its result as it arrives, so a
message answered again replays what is stored and never sends a call id twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from secretaries_core.conversation.instances import SecretarySnapshot
from secretaries_core.conversation.turn import Turn
from secretaries_core.errors import NotFound, SecretariesError
from secretaries_core.llm.base import ToolCall
from secretaries_core.plumbing import tracing
from secretaries_core.plumbing.metrics import Metrics
from secretaries_core.tools.approval import APPROVED, Approval, declined_text, fixed
from secretaries_core.tools.calling import ToolCaller, ToolResult
from secretaries_core.tools.ledger import ToolLedger, TurnLedger, same_call
from secretaries_core.tools.registry import ToolRegistry
from secretaries_core.tools.spec import ASSISTANT_SCHEMA, ToolSpec, tools_param
from secretaries_core.tools.spec import DEFAULT_MAX_TOOL_ROUNDS as DEFAULT_MAX_TOOL_ROUNDS
from secretaries_core.tools.spec import PARAM_MAX_TOOL_ROUNDS as PARAM_MAX_TOOL_ROUNDS
from secretaries_core.tools.spec import PARAM_TOOL_TIMEOUT as PARAM_TOOL_TIMEOUT
from secretaries_core.tools.spec import max_rounds as max_rounds
from secretaries_core.tools.spec import tool_timeout as tool_timeout
from secretaries_core.usage.quotas import PARAM_TOOL_CALLS, Quotas

log = logging.getLogger(__name__)
RECENT_RESULTS = 10_000
# How long a secretary's resolved tool list (and an MCP server's discovered tools) is kept.
OFFER_TTL_S = 30.0
UNKNOWN_OUTCOME = (
    "error: this call was interrupted before its result was stored; it may have run, "
    "and it is not sent again"
)


def status_line(function: str) -> str:
    """What a chat shows while `function` runs (an MCP tool as `server: tool`)."""
    return f"🔧 {function.replace('__', ': ')}…"


def with_status(text: str, status: str) -> str:
    """The text so far with the running tool's line under it."""
    if not status:
        return text
    return f"{text}\n\n{status}" if text else status


@dataclass(frozen=True)
class Offered:
    """One function offered to the model: the tool behind it and its OpenAI definition."""

    function: str
    spec: ToolSpec
    tool: str | None  # an MCP server's tool; None for an HTTP function
    definition: dict[str, Any]


class ToolBox:
    """The functions a secretary version offers, resolved from the tool registry (and, for
    MCP servers, discovered from the server), kept `OFFER_TTL_S`."""

    def __init__(
        self,
        tools: ToolRegistry,
        caller: ToolCaller,
        hop: Callable[..., Awaitable[Any]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tools = tools
        self.caller = caller
        self.hop = hop
        self.clock = clock
        self._specs: dict[str, tuple[float, ToolSpec | None]] = {}
        self._discovered: dict[str, tuple[float, list[Offered]]] = {}

    async def offered(self, secretary: SecretarySnapshot) -> dict[str, Offered]:
        """Function name -> what it calls, for the secretary's `tools` param. A tool that
        cannot be listed now (a removed tool, an MCP server down) is left out and logged."""
        found: dict[str, Offered] = {}
        for name in tools_param(dict(secretary.params)):
            spec = await self._spec(name)
            if spec is None:
                continue
            for offered in await self._functions(spec):
                found[offered.function] = offered
        return found

    async def _spec(self, name: str) -> ToolSpec | None:
        now = self.clock()
        cached = self._specs.get(name)
        if cached is not None and now - cached[0] < OFFER_TTL_S:
            return cached[1]
        try:
            spec: ToolSpec | None = await self.hop(self.tools.get, name)
        except NotFound as exc:
            log.warning("tool %s is not offered: %s", name, exc)
            spec = None
        except SecretariesError:
            # The catalog is unreachable (a database outage): what was known stands, else
            # the message fails and is retried — never asked without its tools.
            if cached is not None:
                return cached[1]
            raise
        self._specs[name] = (now, spec)
        return spec

    async def _functions(self, spec: ToolSpec) -> list[Offered]:
        if spec.kind == "assistant":
            about = spec.description or f"Ask the assistant {spec.assistant} and get its answer."
            return [Offered(spec.name, spec, None, _definition(spec.name, about, ASSISTANT_SCHEMA))]
        if spec.kind == "http":
            return [
                Offered(
                    spec.name,
                    spec,
                    None,
                    _definition(spec.name, spec.description, spec.schema or {}),
                )
            ]
        now = self.clock()
        cached = self._discovered.get(spec.name)
        if cached is not None and now - cached[0] < OFFER_TTL_S:
            return cached[1]
        try:
            listed = await self.caller.mcp.list_tools(spec)
        except (SecretariesError, Exception) as exc:
            # A server that cannot list its tools now: what it listed before is offered
            # (its calls fail one by one, the turn does not), else nothing of it.
            log.warning("MCP server %s cannot list its tools: %s", spec.name, exc)
            return cached[1] if cached is not None else []
        offered = [
            Offered(
                f"{spec.name}__{t.name}",
                spec,
                t.name,
                _definition(f"{spec.name}__{t.name}", t.description, t.input_schema),
            )
            for t in listed
        ]
        self._discovered[spec.name] = (now, offered)
        return offered

    def forget(self) -> None:
        """Drop what is kept (the catalog changed)."""
        self._specs.clear()
        self._discovered.clear()


def _definition(name: str, description: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    parameters = dict(schema) if schema else {"type": "object", "properties": {}}
    parameters.setdefault("type", "object")
    function: dict[str, Any] = {"name": name[:64], "parameters": parameters}
    if description:
        function["description"] = description[:1024]
    return {"type": "function", "function": function}


class ToolRunner:
    """Runs one round's calls for a turn: ledger first, quota, the call, metrics."""

    def __init__(
        self,
        caller: ToolCaller,
        ledger: ToolLedger,
        quotas: Quotas,
        metrics: Metrics,
        hop: Callable[..., Awaitable[Any]],
        default_tool_calls_per_day: int | None,
        now: Callable[[], Any],
    ) -> None:
        self.caller = caller
        self.ledger = ledger
        self.quotas = quotas
        self.metrics = metrics
        self.hop = hop
        self.default_tool_calls_per_day = default_tool_calls_per_day
        self.now = now
        # Results this process got, by call id (the newest RECENT_RESULTS): a turn whose
        # ledger write failed (the store away a moment) is retried here, and reuses them
        # instead of telling the model the outcome is unknown.
        self.recent: OrderedDict[tuple[int, str], tuple[str, bool]] = OrderedDict()
        # Asks assistants as tools (conversation/delegation.py); set once the path exists.
        self.delegate: Any = None

    async def run_round(
        self,
        turn: Turn,
        number: int,
        calls: list[ToolCall],
        offered: Mapping[str, Offered],
        stored: TurnLedger,
        deadline: float,
        fresh: set[str],
    ) -> list[dict[str, Any]]:
        """The `tool` messages answering `calls` (round `number`), in their order; `fresh`:
        the call ids whose start this attempt recorded with the round."""
        asked = [
            self._one(
                turn, f"{_turn_key(turn)}:{number}:{i}", call, offered, stored, deadline, fresh
            )
            for i, call in enumerate(calls)
        ]
        # One call (the common round) is awaited in place: a task and a gather around it
        # would only cost the loop two more turns.
        results = [await asked[0]] if len(asked) == 1 else await asyncio.gather(*asked)
        return [
            {"role": "tool", "tool_call_id": call.id, "content": text}
            for call, text in zip(calls, results, strict=True)
        ]

    async def _one(
        self,
        turn: Turn,
        call_id: str,
        call: ToolCall,
        offered: Mapping[str, Offered],
        stored: TurnLedger,
        deadline: float,
        fresh: set[str],
    ) -> str:
        if tracing.tracer() is None:  # no span: nothing to describe it with
            return await self._one_call(turn, call_id, call, offered, stored, deadline, fresh)
        found = offered.get(call.name)
        attributes = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": call.name,
            "gen_ai.tool.call.id": call_id,
            "gen_ai.tool.type": "extension" if found and found.spec.kind == "mcp" else "function",
            "secretaries.tool": found.spec.name if found else "unknown",
            "secretaries.secretary": turn.resolved.secretary.name,
            "secretaries.version": turn.resolved.secretary.version,
        }
        with tracing.span(f"execute_tool {call.name}", attributes) as span:
            text = await self._one_call(turn, call_id, call, offered, stored, deadline, fresh)
            if span is not None and tracing.capture_content():
                tracing.set_attributes(
                    span,
                    {"gen_ai.tool.call.arguments": call.arguments, "gen_ai.tool.call.result": text},
                )
            return text

    async def _one_call(
        self,
        turn: Turn,
        call_id: str,
        call: ToolCall,
        offered: Mapping[str, Offered],
        stored: TurnLedger,
        deadline: float,
        fresh: set[str],
    ) -> str:
        secretary = turn.resolved.secretary
        found = offered.get(call.name)
        label = found.spec.name if found else "unknown"

        def count(outcome: str) -> None:
            self.metrics.tool_calls.labels(
                secretary=secretary.name,
                version=str(secretary.version),
                tool=label,
                outcome=outcome,
            ).inc()

        if call_id in stored.results:
            count("reused")
            return stored.results[call_id][0]
        if (turn.telegram_id, call_id) in self.recent:
            count("reused")
            text, ok = self.recent[(turn.telegram_id, call_id)]
            await self._record(turn, call_id, text, ok, stored)
            return text
        carried = await self._carried(turn, call, found)
        if carried is not None:
            outcome, text, ok = carried
            count(outcome)
            await self._record(turn, call_id, text, ok, stored)
            return text
        refusal = await self._refusal(turn, call_id, call, found, stored, fresh)
        if refusal is not None:
            outcome, text = refusal
            count(outcome)
            if outcome != "unknown":
                await self._record(turn, call_id, text, False, stored)
            return text
        assert found is not None
        arguments = json.loads(call.arguments or "{}")
        if found.spec.confirm and turn.tools_mode == "live":
            declined = await self._approval(turn, call_id, found, arguments, stored)
            if declined is not None:
                count("declined")
                await self._record(turn, call_id, declined, False, stored)
                if turn.on_tool is not None:
                    turn.on_tool(found.function, "failed")
                return declined
        if turn.key is not None and call_id not in fresh:
            # A read-only call sent again: its new start is recorded on its own.
            await self.ledger.write_start(
                turn.telegram_id, secretary.id, call_id, turn.began, self.now()
            )
        stored.started.add(call_id)
        fresh.discard(call_id)
        if turn.on_tool is not None:
            turn.on_tool(found.function, "started")
        left = max(0.001, deadline - time.monotonic())
        timeout = min(found.spec.timeout_for(tool_timeout(secretary.params)), left)
        if found.spec.kind == "assistant":
            asked = self.delegate.call(turn, found.spec, arguments, call_id, timeout)
        else:
            asked = self.caller.call(found.spec, arguments, call_id, found.tool, timeout=timeout)
        running = asyncio.ensure_future(asked)
        same = same_call(call.name, call.arguments)
        stored.running[same] = running

        def kept(done: asyncio.Future[ToolResult]) -> None:
            stored.running.pop(same, None)
            if not done.cancelled() and done.exception() is None:
                stored.results.setdefault(call_id, (done.result().text, done.result().ok))

        running.add_done_callback(kept)
        # Shielded: a call that was sent runs to its end even if this turn is interrupted
        # (the newer turn that answers it too then reuses its result).
        result: ToolResult = await asyncio.shield(running)
        turn.tool_calls += 1
        turn.tool_failures += 0 if result.ok else 1
        if not result.ok:
            tracing.set_attributes(tracing.current(), {"error.type": result.outcome})
        self.metrics.tool_seconds.labels(tool=found.spec.name).observe(result.seconds)
        count(result.outcome)
        await self._record(turn, call_id, result.text, result.ok, stored)
        if turn.on_tool is not None:
            turn.on_tool(found.function, "done" if result.ok else "failed")
        return result.text

    async def _approval(
        self,
        turn: Turn,
        call_id: str,
        found: Offered,
        arguments: dict[str, Any],
        stored: TurnLedger,
    ) -> str | None:
        """None once the user approved the call, else what the model is told. Asks the
        turn's approver only when no decision is kept (a turn answered again never asks
        twice); `AwaitingApproval` from it parks the turn until the decision comes."""
        decision = stored.decisions.get(call_id)
        if decision is None:
            secretary = turn.resolved.secretary
            approval = Approval(
                call_id, found.spec.name, found.function, arguments, turn.telegram_id,
                secretary.name, secretary.id,
            )  # fmt: skip
            decision = await (turn.approver or fixed(False))(approval)
            if turn.key is not None:
                # Kept with the call id; a decision written first elsewhere (a press and a
                # timeout racing) is the one that counts.
                await self.ledger.write_decision(
                    turn.telegram_id, secretary.id, call_id, decision, turn.began, self.now()
                )
                kept = await self.ledger.decision(turn.telegram_id, secretary.id, call_id)
                decision = kept or decision
            stored.decisions[call_id] = decision
        return None if decision == APPROVED else declined_text(decision, found.function)

    async def _carried(
        self, turn: Turn, call: ToolCall, found: Offered | None
    ) -> tuple[str, str, bool] | None:
        """(outcome, text, ok) when a message this turn superseded made the same call:
        its result (awaited if still running) is reused; one sent whose outcome is unknown
        is not sent again, unless read-only."""
        for earlier in turn.ticket.carried_ledgers:
            known = earlier.earlier(call.name, call.arguments)
            if known is None:
                continue
            if known == "started":
                if found is not None and found.spec.read_only:
                    return None
                return "unknown", UNKNOWN_OUTCOME, False
            if isinstance(known, tuple):
                return "reused", known[0], known[1]
            result: ToolResult = await asyncio.shield(known)
            return "reused", result.text, result.ok
        return None

    async def _refusal(
        self,
        turn: Turn,
        call_id: str,
        call: ToolCall,
        found: Offered | None,
        stored: TurnLedger,
        fresh: set[str],
    ) -> tuple[str, str] | None:
        """(metric outcome, the model's answer) when the call is not sent, else None."""
        if found is None:
            return "failed", f"error: no tool named {call.name[:64]!r} is offered"
        if turn.tools_mode != "live" and not found.spec.read_only:
            # An eval or a replay: nothing with side effects runs. A replay answers a call
            # the conversation made then with what it got then.
            shown = f"{call.name}({call.arguments[:200]})"
            earlier = turn.replayed.get(same_call(call.name, call.arguments))
            if earlier is not None:
                turn.not_run.append(f"{shown}: answered from the stored conversation")
                return "reused", earlier
            turn.not_run.append(shown)
            return "skipped", f"not run in {turn.tools_mode}: {call.name} is not read-only"
        if call_id in stored.started and call_id not in fresh and not found.spec.read_only:
            return "unknown", UNKNOWN_OUTCOME
        try:
            arguments = json.loads(call.arguments or "{}")
        except json.JSONDecodeError:
            arguments = None
        if not isinstance(arguments, dict):
            return "failed", "error: the arguments are not a JSON object"
        if turn.tools_mode == "live" and not await self._quota_allows(turn):
            unavailable = "this tool is unavailable: the user's daily tool-call quota is used up"
            return "refused", f"error: {unavailable}"
        return None

    async def _record(
        self, turn: Turn, call_id: str, text: str, ok: bool, stored: TurnLedger
    ) -> None:
        """Keep a call's result: in the turn, in this process, and for a queued message
        in the ledger (an answer given again reuses it)."""
        stored.results[call_id] = (text, ok)
        if turn.key is not None:
            self.recent[(turn.telegram_id, call_id)] = (text, ok)
            self.recent.move_to_end((turn.telegram_id, call_id))
            while len(self.recent) > RECENT_RESULTS:
                self.recent.popitem(last=False)
        if turn.key is not None:
            await self.ledger.write_result(
                turn.telegram_id,
                turn.resolved.secretary.id,
                call_id,
                text,
                ok,
                turn.began,
                self.now(),
            )

    async def _quota_allows(self, turn: Turn) -> bool:
        params = turn.resolved.secretary.params
        raw = params.get(PARAM_TOOL_CALLS)
        limit = self.default_tool_calls_per_day if raw in (None, "") else int(raw)
        if limit is None:
            return True
        allowed: bool = await self.hop(
            self.quotas.take_tool_call, turn.telegram_id, limit, self.now()
        )
        return allowed


def _needs_approval(turn: Turn, offered: Mapping[str, Offered], call: ToolCall) -> bool:
    found = offered.get(call.name)
    return found is not None and found.spec.confirm and turn.tools_mode == "live"


def _turn_key(turn: Turn) -> str:
    """The turn's part of its call ids: the update id, else an id made for the turn."""
    if turn.key is not None:
        return turn.key
    if not turn.tool_turn:
        from secretaries_core.conversation.turn import new_turn_id

        turn.tool_turn = new_turn_id()
    return turn.tool_turn


class ToolLoop:
    """The rounds of one turn: ask, run the calls, ask again (see the module docstring)."""

    def __init__(self, box: ToolBox, runner: ToolRunner) -> None:
        self.box = box
        self.runner = runner

    async def offered(self, turn: Turn) -> dict[str, Offered]:
        """The functions the turn's secretary version offers (none: no tool loop)."""
        if not tools_param(dict(turn.resolved.secretary.params)):
            return {}
        return await self.box.offered(turn.resolved.secretary)

    async def run(
        self,
        turn: Turn,
        offered: Mapping[str, Offered],
        parts: list[str],
        sink: Callable[[str], None] | None,
        deadline: float,
    ) -> None:
        """Ask until the model answers with text; its pieces go to `parts` (and `sink`)."""
        from secretaries_core.llm.base import CallUsage

        assert turn.fit is not None
        secretary = turn.resolved.secretary
        if turn.tool_ledger is None:
            turn.tool_ledger = (
                await self.runner.ledger.read(turn.telegram_id, secretary.id, turn.key)
                if turn.key is not None
                else TurnLedger(turn=_turn_key(turn))
            )
        stored = turn.tool_ledger
        # A newer message that supersedes this one (policy `interrupt`) takes it along.
        turn.ticket.ledger = stored
        fresh: set[str] = set()  # call ids whose start this attempt recorded itself
        definitions = [o.definition for o in offered.values()]
        limit = max_rounds(secretary.params)
        if turn.rounds_left is None:
            turn.rounds_left = [limit]  # shared with the assistants this turn asks
        total = turn.usage = CallUsage()
        turn.steps = []
        number = 0
        while True:
            last = number >= limit or turn.rounds_left[0] <= 0
            calls = None if last else stored.rounds.get(number)
            said = ""
            if calls is None:
                request = turn.instance.request(
                    turn.fit.history,
                    turn.texts,
                    summary=turn.summary.text if turn.summary else None,
                    tools=definitions,
                    tool_choice="none" if last else None,
                    steps=list(turn.steps),
                )
                usage = CallUsage()
                pieces: list[str] = []
                async for piece in turn.instance.reply(
                    request, stream=sink is not None, usage=usage
                ):
                    pieces.append(piece)
                    if sink is not None:
                        sink(piece)
                _add_usage(total, usage)
                if not usage.tool_calls or last:
                    if not pieces:
                        from secretaries_core.errors import ModelError

                        raise ModelError(
                            f"{secretary.name}: the model answered no text after "
                            f"{limit} tool round(s)"
                        )
                    parts.extend(pieces)
                    return
                calls, said = usage.tool_calls, "".join(pieces)
                if turn.key is not None:
                    # The round and its calls' starts, in one write, before any is sent;
                    # a call that waits for the user's approval records its start when sent.
                    unsent = frozenset(
                        i for i, c in enumerate(calls) if _needs_approval(turn, offered, c)
                    )
                    fresh.update(
                        f"{turn.key}:{number}:{i}" for i in range(len(calls)) if i not in unsent
                    )
                    await self.runner.ledger.write_round(
                        turn.telegram_id,
                        secretary.id,
                        turn.key,
                        number,
                        calls,
                        turn.began,
                        self.runner.now(),
                        unsent,
                    )
                stored.rounds[number] = calls
            turn.steps.append(
                {
                    "role": "assistant",
                    "content": said or None,
                    "tool_calls": [c.as_openai() for c in calls],
                }
            )
            turn.rounds_left[0] -= 1  # before the calls: an assistant they ask spends from it
            turn.steps += await self.runner.run_round(
                turn, number, calls, offered, stored, deadline, fresh
            )
            number += 1


def _add_usage(total: Any, one: Any) -> None:
    """Sum a round's reported tokens into the turn's (unreported stays unreported)."""
    if one.prompt_tokens is not None:
        total.prompt_tokens = (total.prompt_tokens or 0) + one.prompt_tokens
    if one.completion_tokens is not None:
        total.completion_tokens = (total.completion_tokens or 0) + one.completion_tokens
    total.model = one.model or total.model
    total.truncated = one.truncated
