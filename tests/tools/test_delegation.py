"""Assistants as tools: a secretary asks a researcher assistant, which calls its own MCP
server (two levels deep), through the real `secretaries chat` process and two model
doubles (one per provider, so each assistant's model is seen where it is asked).

Checked: the researcher's own prompt, model and tool reach its model; the answer comes
back through the tool; nothing of the researcher is stored; usage is split by assistant;
a cycle is refused wherever it would form; a nest deeper than 3 is cut.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.plumbing.db import make_engine
from tests.cli.conftest import Run, as_json, cli, failed, ok, private_home  # noqa: F401
from tests.llm_server import llm_server
from tests.tools.test_tools import _stdio


def _ask(rounds: list[list[list[object]]], note: str = "") -> str:
    return f"{note} TOOLS: {json.dumps(rounds)}"


def test_a_secretary_asks_a_researcher_with_its_own_mcp_tool(
    cli: Run,  # noqa: F811 (the CLI tests' fixture)
    db_url: str,
    tmp_path: Path,
) -> None:
    log = tmp_path / "mcp.log"
    with llm_server() as (front_url, front), llm_server() as (lab_url, lab):
        ok(cli("providers", "add", "front", "--base-url", front_url))
        ok(cli("providers", "add", "lab", "--base-url", lab_url))
        ok(cli("tools", "add", "notes", "--mcp-command", _stdio(log), "--allow", "echo"))
        ok(
            cli(
                "create", "researcher", "--model", "lab/deep", "--prompt", "You research.",
                "--tools", "notes", "--no-secretary",
            )
        )  # fmt: skip
        ok(cli("tools", "add", "ask_researcher", "--assistant", "researcher", "--history", "last"))
        shown = as_json(cli("tools", "show", "ask_researcher", "--json"))
        assert (shown["kind"], shown["assistant"], shown["history"]) == (
            "assistant",
            "researcher",
            "last",
        )
        ok(
            cli(
                "create", "alice", "--model", "front/quick", "--prompt", "You are alice.",
                "--tools", "ask_researcher", "--default",
            )
        )  # fmt: skip
        inner = _ask([[["notes__echo", {"text": "orbit of Io"}]]], "find the orbit of Io")
        outer = _ask([[["ask_researcher", {"message": inner}]]], "what is Io's orbit?")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SECRETARIES_")}
        env.update(SECRETARIES_HOME=str(tmp_path / "home"), SECRETARIES_DATABASE_URL=db_url)
        done = subprocess.run(
            [sys.executable, "-m", "secretaries_cli", "chat", "42", outer, "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        reply = json.loads(done.stdout)
        # The researcher's model: its own prompt, its model name, its own tool offered,
        # and (history `last`) the user's message before the question it was asked.
        first = lab.requests[0]
        assert first["model"] == "deep"
        assert first["messages"][0] == {"role": "system", "content": "You research."}
        assert [m["content"] for m in first["messages"][1:]] == [outer, inner]
        assert [t["function"]["name"] for t in first["tools"]] == ["notes__echo"]
        assert len(lab.requests) == 2  # the tool round, then its answer
        # alice's model never saw the researcher's tool; it got the researcher's answer.
        assert [t["function"]["name"] for t in front.requests[0]["tools"]] == ["ask_researcher"]
        results = [m for m in front.requests[-1]["messages"] if m["role"] == "tool"]
        assert "echo: orbit of Io" in results[0]["content"]
        assert "echo: orbit of Io" in reply["reply"]
    # The MCP server was called once, with a nested exactly-once key.
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c["tool"] for c in calls] == ["echo"]
    # Nothing of the researcher's is stored: only alice's context exists.
    assert set(as_json(cli("contexts", "stats", "--json"))["by_secretary"]) == {"alice"}
    # Usage is split by assistant, both for user 42.
    usage = as_json(cli("usage", "--user", "42", "--json"))
    assert set(usage["by_secretary"]) == {"alice", "researcher"}
    assert usage["by_secretary"]["researcher"]["prompt_tokens"] > 0
    assert usage.get("tool_calls", 0) >= 2  # alice's call of the researcher, its MCP call

    # A cycle is refused wherever it would form, naming it.
    ok(cli("tools", "add", "ask_alice", "--assistant", "alice"))
    failed(
        cli("update", "researcher", "--tools", "notes,ask_alice"),
        1,
        "cycle: researcher (tool ask_alice) → alice (tool ask_researcher) → researcher",
    )
    failed(cli("update", "researcher", "--tools", "ask_alice", "--draft"), 1, "cycle")
    ok(cli("create", "bob", "--model", "echo", "--prompt", "B.", "--no-secretary"))
    failed(
        cli("update", "alice", "--tools", "ask_researcher,ask_alice"), 1, "alice (tool ask_alice)"
    )
    engine = make_engine(db_url)
    assert SecretaryRegistry(engine).get_secretary("researcher").params["tools"] == "notes"
    engine.dispose()


def test_a_nest_deeper_than_three_is_cut(
    cli: Run,  # noqa: F811 (the CLI tests' fixture)
    db_url: str,
    tmp_path: Path,
) -> None:
    with llm_server() as (url, script):
        ok(cli("providers", "add", "p", "--base-url", url))
        ok(cli("create", "a4", "--model", "p/m", "--prompt", "A4.", "--no-secretary"))
        for n in (3, 2, 1):
            ok(cli("tools", "add", f"ask{n + 1}", "--assistant", f"a{n + 1}"))
            ok(
                cli(
                    "create", f"a{n}", "--model", "p/m", "--prompt", f"A{n}.",
                    "--tools", f"ask{n + 1}", "--no-secretary",
                )
            )  # fmt: skip
        ok(cli("tools", "add", "ask1", "--assistant", "a1"))
        ok(cli("create", "top", "--model", "p/m", "--prompt", "T.", "--tools", "ask1", "--default"))
        ok(cli("tools", "add", "ask5", "--assistant", "top"))
        failed(cli("update", "a4", "--tools", "ask5"), 1, "cycle: a4 (tool ask5) → top (tool ask1)")
        message = "deepest"
        for n in (4, 3, 2, 1):  # top asks a1, which asks a2, … a4 would ask beyond
            message = _ask([[[f"ask{n}", {"message": message}]]], f"level {n}")
        reply = as_json(cli("chat", "7", message, "--json"))["reply"]
    # top (depth 0) → a1 (1) → a2 (2) → a3 (3): a3's call of a4 is refused.
    assert "nested 3 deep at most" in reply
    prompts = [r["messages"][0]["content"] for r in script.requests]
    assert "A4." not in prompts and {"T.", "A1.", "A2.", "A3."} <= set(prompts)
