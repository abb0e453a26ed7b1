"""Tools against real servers: an HTTP function (aiohttp) and an MCP server (the official
SDK, over stdio and Streamable HTTP), through the CLI, the REST API and the library.

What reaches the servers is recorded by the servers themselves: the exact arguments, the
`Idempotency-Key` / `_meta.idempotency_key`, the HMAC signature. Timeouts are the tool's
own; failures (HTTP 500, an MCP error, a crashed server, a hanging one) are one line and
the next call works; results are cut and scrubbed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from secretaries_core.catalog.models import AssistantCreate
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.errors import Conflict
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine
from secretaries_core.tools.calling import ToolCaller
from secretaries_core.tools.registry import ToolRegistry
from secretaries_core.tools.spec import ToolSpec
from tests.servers import app_in_thread, free_port

ROOT = Path(__file__).resolve().parents[2]
SECRET = "hmac-key-for-the-test-0123456789"
SCHEMA = {
    "type": "object",
    "properties": {"room": {"type": "string"}, "hour": {"type": "integer"}},
    "required": ["room", "hour"],
}


@contextmanager
def http_tool_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A booking function: records each request; `/fail` answers 500, `/slow` waits."""
    seen: list[dict[str, Any]] = []

    async def book(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append(
            {
                "path": request.path,
                "body": body,
                "key": request.headers.get("Idempotency-Key"),
                "signature": request.headers.get("X-Secretaries-Signature"),
                "auth": request.headers.get("Authorization"),
            }
        )
        if request.path == "/fail":
            return web.Response(status=500, text="database locked\nsecond line")
        if request.path == "/slow":
            await asyncio.sleep(float(json.loads(body).get("hour", 1)))
        if request.path == "/bytes":
            return web.Response(body=b"\xff\xfe booked \xc3", content_type="text/plain")
        return web.json_response({"booked": json.loads(body)})

    app = web.Application()
    app.router.add_post("/{tail:.*}", book)
    with app_in_thread(app, name="http-tool") as port:
        yield f"http://127.0.0.1:{port}", seen


@contextmanager
def mcp_http_server(log: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.tools.mcp_server", "http", str(port), str(log)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                import socket

                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                assert proc.poll() is None, "the MCP server died"
                assert time.monotonic() < deadline, "the MCP server did not come up"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(10)


def _calls(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def _stdio(log: Path) -> str:
    return f"{sys.executable} -m tests.tools.mcp_server stdio {log}"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[ToolRegistry]:
    engine = make_engine(f"sqlite:///{tmp_path / 'tools.db'}")
    schema.upgrade(engine)
    yield ToolRegistry(engine)
    engine.dispose()


def test_http_tool_gets_the_arguments_the_key_and_a_valid_signature(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BOOKING_HMAC", SECRET)
    monkeypatch.setenv("BOOKING_TOKEN", "Bearer tool-token-1")
    with http_tool_server() as (url, seen):
        spec = ToolSpec(
            "book",
            "http",
            url=url + "/book",
            schema=SCHEMA,
            secret_env="BOOKING_HMAC",
            headers={"Authorization": "BOOKING_TOKEN"},
        ).validated()

        async def go() -> list[Any]:
            caller = ToolCaller()
            ok = await caller.call(spec, {"room": "A1", "hour": 9}, "77:0:0")
            failed = await caller.call(
                ToolSpec("book", "http", url=url + "/fail", schema=SCHEMA), {}, "77:0:1"
            )
            garbled = await caller.call(
                ToolSpec("book", "http", url=url + "/bytes", schema=SCHEMA), {}, "77:0:2"
            )
            return [ok, failed, garbled]

        ok, failed, garbled = asyncio.run(go())
    assert ok.ok and json.loads(ok.text) == {"booked": {"room": "A1", "hour": 9}}
    first = seen[0]
    assert json.loads(first["body"]) == {"room": "A1", "hour": 9}
    assert first["key"] == "77:0:0"
    expected = hmac.new(SECRET.encode(), first["body"], hashlib.sha256).hexdigest()
    assert first["signature"] == f"sha256={expected}"
    assert first["auth"] == "Bearer tool-token-1"
    assert not failed.ok and failed.text == "error: HTTP 500: database locked"
    assert garbled.ok and "booked" in garbled.text  # invalid UTF-8: replaced, not fatal


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_mcp_server_tools_discovered_called_with_the_key_and_its_failures_survived(
    tmp_path: Path, transport: str
) -> None:
    log = tmp_path / "calls.jsonl"
    with contextlib_for(transport, log) as where:
        spec = ToolSpec(
            "cal",
            "mcp",
            url=where if transport == "http" else None,
            command=where if transport == "stdio" else None,
            timeout=10,
        ).validated()

        async def go() -> dict[str, Any]:
            caller = ToolCaller(result_chars=1000)
            found: dict[str, Any] = {}
            found["tools"] = [t.name for t in await caller.mcp.list_tools(spec)]
            found["echo"] = await caller.call(spec, {"text": "hi"}, "u1:0:0", "echo")
            found["fail"] = await caller.call(spec, {}, "u1:0:1", "fail")
            found["again"] = await caller.call(spec, {"text": "still"}, "u1:0:2", "echo")
            found["big"] = await caller.call(spec, {"chars": 50_000}, "u1:0:3", "big")
            if transport == "stdio":
                found["crash"] = await caller.call(spec, {}, "u1:1:0", "crash")
                found["after"] = await caller.call(spec, {"text": "back"}, "u1:1:1", "echo")
            await caller.aclose()
            return found

        found = asyncio.run(go())
    assert {"echo", "slow", "fail", "crash", "big"} <= set(found["tools"])
    assert found["echo"].ok and found["echo"].text == "echo: hi (key u1:0:0)"
    assert not found["fail"].ok and "the calendar is locked" in found["fail"].text
    assert "\n" not in found["fail"].text
    assert found["again"].ok  # the session survived the MCP error
    big = found["big"]
    assert big.ok and big.cut and len(big.text) < 1100 and "cut at 1000" in big.text
    assert "LEAKED" not in big.text
    if transport == "stdio":
        assert not found["crash"].ok and found["crash"].text.startswith("error: MCP server")
        assert found["after"].ok and found["after"].text == "echo: back (key u1:1:1)"
    keys = [c["key"] for c in _calls(log) if c["tool"] == "echo"]
    assert keys[:2] == ["u1:0:0", "u1:0:2"]  # each call id reached the server once


@contextmanager
def contextlib_for(transport: str, log: Path) -> Iterator[str]:
    if transport == "stdio":
        yield _stdio(log)
    else:
        with mcp_http_server(log) as url:
            yield url


@pytest.mark.parametrize(("timeout", "takes", "ok"), [(0.5, 10.0, False), (3.0, 1.5, True)])
def test_the_tools_own_timeout_is_what_fires(
    tmp_path: Path, timeout: float, takes: float, ok: bool
) -> None:
    spec = ToolSpec("cal", "mcp", command=_stdio(tmp_path / "c.jsonl"), timeout=timeout)

    async def go() -> tuple[Any, float]:
        caller = ToolCaller()
        await caller.mcp.open(spec)  # the server is up: only the call is timed
        started = time.monotonic()
        result = await caller.call(spec, {"seconds": takes}, "t:0:0", "slow")
        took = time.monotonic() - started
        after = await caller.call(spec, {"text": "next"}, "t:0:1", "echo")
        await caller.aclose()
        assert after.ok, after.text
        return result, took

    result, took = asyncio.run(go())
    assert result.ok is ok, result.text
    if ok:
        assert took >= takes
    else:
        assert result.text == f"error: timed out after {timeout:g}s"
        assert timeout <= took < timeout + 1.5


def test_remove_is_refused_while_a_secretary_uses_the_tool(registry: ToolRegistry) -> None:
    registry.add(ToolSpec("book", "http", url="http://127.0.0.1:9/book", schema=SCHEMA))
    catalog = SecretaryRegistry(registry.engine)
    catalog.create_secretary(
        AssistantCreate(name="alice", model="echo", prompt="A", params={"tools": "book"})
    )
    with pytest.raises(Conflict, match="alice v1"):
        registry.remove("book")
    from secretaries_core.catalog.models import AssistantUpdate

    catalog.update_secretary("alice", AssistantUpdate(params={"tools": ""}))
    with pytest.raises(Conflict, match="alice v1"):  # an older version still names it
        registry.remove("book")


def _cli(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("SECRETARIES_")}
    full.update(SECRETARIES_HOME=str(home), PYTHONPATH=str(ROOT), **env)
    return subprocess.run(
        [sys.executable, "-m", "secretaries_cli", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_cli_add_list_show_call_remove(tmp_path: Path) -> None:
    home = tmp_path / "home"
    schema_file = tmp_path / "book.json"
    schema_file.write_text(json.dumps(SCHEMA))
    log = tmp_path / "calls.jsonl"
    with http_tool_server() as (url, seen):
        added = _cli(
            home,
            "tools",
            "add",
            "book",
            "--http",
            url + "/book",
            "--schema",
            str(schema_file),
            "--secret-env",
            "BOOK_KEY",
            "--timeout",
            "5",
            "--json",
        )
        assert added.returncode == 0, added.stderr
        assert json.loads(added.stdout)["secret_env"] == "BOOK_KEY"
        assert _cli(home, "tools", "add", "cal", "--mcp-command", _stdio(log)).returncode == 0
        listed = json.loads(_cli(home, "tools", "list", "--json").stdout)
        assert [t["name"] for t in listed] == ["book", "cal"]
        shown = json.loads(_cli(home, "tools", "show", "cal", "--json").stdout)
        assert "echo" in [t["name"] for t in shown["tools"]]
        called = _cli(
            home, "tools", "call", "book", "--args", '{"room": "B", "hour": 3}', BOOK_KEY=SECRET
        )
        assert called.returncode == 0, called.stderr
        assert json.loads(called.stdout) == {"booked": {"room": "B", "hour": 3}}
        # The one-shot CLI's transport (http.client) sends what aiohttp sends.
        assert len(seen) == 1 and seen[0]["body"] == b'{"room":"B","hour":3}'
        expected = hmac.new(SECRET.encode(), seen[0]["body"], hashlib.sha256).hexdigest()
        assert seen[0]["signature"] == f"sha256={expected}"
        assert seen[0]["key"].startswith("cli-") and seen[0]["key"].endswith(":0:0")
        unsigned = _cli(home, "tools", "call", "book", "--args", "{}")
        assert unsigned.returncode == 1 and "BOOK_KEY" in unsigned.stderr
        # Its own timeout fires: 1 s stops a 20 s call.
        slow = ["tools", "add", "slow", "--http", url + "/slow", "--timeout", "1"]
        assert _cli(home, *slow, "--schema", str(schema_file)).returncode == 0
        started = time.monotonic()
        stopped = _cli(home, "tools", "call", "slow", "--args", '{"room": "B", "hour": 20}')
        assert stopped.returncode == 1 and "timed out after 1s" in stopped.stderr
        assert time.monotonic() - started < 15
        gone = ["tools", "add", "gone", "--http", f"http://127.0.0.1:{free_port()}/x"]
        assert _cli(home, *gone, "--schema", str(schema_file)).returncode == 0
        refused = _cli(home, "tools", "call", "gone", "--args", "{}")
        assert refused.returncode == 1 and "unreachable" in refused.stderr, refused.stderr
        for name in ("slow", "gone"):
            assert _cli(home, "tools", "remove", name).returncode == 0
        echoed = _cli(home, "tools", "call", "cal", "--tool", "echo", "--args", '{"text": "x"}')
        assert echoed.returncode == 0 and echoed.stdout.startswith("echo: x (key cli-")
    # Bad input: clear errors, nothing stored.
    for bad, code in (
        (["tools", "add", "x"], 1),
        (["tools", "add", "has__two", "--mcp-command", "true"], 1),
        (["tools", "add", "h", "--http", "ftp://x", "--schema", str(schema_file)], 1),
        (["tools", "add", "h", "--http", "http://u:pw@x/", "--schema", str(schema_file)], 1),
        (["tools", "add", "book", "--mcp-command", "true"], 1),
        (["tools", "call", "book", "--args", "[1]"], 1),
        (["tools", "call", "nope", "--args", "{}"], 1),
    ):
        done = _cli(home, *bad)
        assert done.returncode == code, (bad, done.stderr)
        assert done.stderr.startswith("Error:") and "Traceback" not in done.stderr, bad
    assert "pw" not in _cli(home, "tools", "list").stdout
    assert _cli(home, "tools", "remove", "cal").returncode == 0
    assert [t["name"] for t in json.loads(_cli(home, "tools", "list", "--json").stdout)] == ["book"]


def test_rest_api_has_the_same_documents(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from secretaries_api import create_app
    from secretaries_api.services import Services
    from secretaries_core.config import Settings

    token = "t" * 16
    services = Services.from_settings(Settings.load(env={"SECRETARIES_HOME": str(tmp_path)}))
    log = tmp_path / "calls.jsonl"
    with (
        http_tool_server() as (url, _seen),
        TestClient(
            create_app(services, api_token=token), headers={"Authorization": f"Bearer {token}"}
        ) as client,
    ):
        made = client.post("/api/tools/", json={"name": "book", "http": url, "schema": SCHEMA})
        assert made.status_code == 201, made.text
        again = client.post("/api/tools/", json={"name": "book", "http": url, "schema": SCHEMA})
        assert again.status_code == 409
        bad = client.post("/api/tools/", json={"name": "x", "http": url})
        assert bad.status_code == 422
        assert (
            client.post("/api/tools/", json={"name": "cal", "mcp_command": _stdio(log)}).status_code
            == 201
        )
        assert [t["name"] for t in client.get("/api/tools/").json()] == ["book", "cal"]
        shown = client.get("/api/tools/cal").json()
        assert "echo" in [t["name"] for t in shown["tools"]]
        called = client.post("/api/tools/cal/call", json={"tool": "echo", "args": {"text": "y"}})
        assert called.json()["ok"] and called.json()["result"].startswith("echo: y (key api-")
        assert client.get("/api/tools/nope").status_code == 404
        assert client.delete("/api/tools/cal").json() == {"removed": "cal"}
    services.close()


def test_a_secretarys_tools_are_part_of_its_version(tmp_path: Path) -> None:
    home = tmp_path / "home"
    schema_file = tmp_path / "book.json"
    schema_file.write_text(json.dumps(SCHEMA))
    add = ["tools", "add", "book", "--http", "http://127.0.0.1:9/book", "--schema"]
    assert _cli(home, *add, str(schema_file)).returncode == 0
    # An unknown tool is refused with a clear error, and nothing is created.
    refused = _cli(home, "create", "alice", "--model", "echo", "--prompt", "A", "--tools", "nope")
    assert refused.returncode == 1 and refused.stderr.startswith("Error: unknown tool")
    assert json.loads(_cli(home, "list", "--json").stdout) == []
    made = _cli(home, "create", "alice", "--model", "echo", "--prompt", "A", "--tools", "book")
    assert made.returncode == 0, made.stderr
    bad_rounds = _cli(home, "update", "alice", "--param", "max_tool_rounds=-1")
    assert bad_rounds.returncode == 1 and "max_tool_rounds" in bad_rounds.stderr
    assert _cli(home, "update", "alice", "--tools", "", "--note", "no tools").returncode == 0
    versions = json.loads(_cli(home, "versions", "alice", "--json").stdout)
    by_number = {v["version"]: v for v in versions}
    assert by_number[1]["params"]["tools"] == "book"
    assert "tools" not in by_number[2]["params"]
    # Version 1 still names it: removing the tool is refused, naming the version.
    kept = _cli(home, "tools", "remove", "book")
    assert kept.returncode == 1 and "alice v1" in kept.stderr
    # Catalog files carry tools as a list, both ways.
    assert _cli(home, "update", "alice", "--tools", "book").returncode == 0
    exported = _cli(home, "export").stdout
    assert "tools:\n  - book" in exported or "tools: [book]" in exported or "- book" in exported
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(exported.replace("book", "missing"))
    applied = _cli(home, "apply", str(catalog), "--yes")
    assert applied.returncode == 1 and "missing" in applied.stderr, applied.stderr


def test_rest_stream_has_tool_events_and_usage_counts_tool_calls(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from secretaries_api import create_app
    from secretaries_api.services import Services
    from secretaries_core.config import Settings
    from tests.llm_server import llm_server

    token = "t" * 16
    with http_tool_server() as (url, _seen), llm_server() as (llm_url, _script):
        env = {"SECRETARIES_HOME": str(tmp_path), "SECRETARIES_OPENAI_BASE_URL": llm_url}
        services = Services.from_settings(Settings.load(env=env))
        auth = {"Authorization": f"Bearer {token}"}
        with TestClient(create_app(services, api_token=token), headers=auth) as client:
            assert (
                client.post(
                    "/api/tools/", json={"name": "book", "http": url + "/book", "schema": SCHEMA}
                ).status_code
                == 201
            )
            made = client.post(
                "/api/secretaries",
                json={"name": "alice", "model": "openai/m", "prompt": "A.", "is_default": True,
                      "params": {"tools": "book"}},
            )  # fmt: skip
            assert made.status_code in (200, 201), made.text
            rounds = [[["book", {"room": "S", "hour": 1}]], [["book", {"room": "T", "hour": 2}]]]
            body = {"user_id": 77, "text": "TOOLS: " + json.dumps(rounds)}
            with client.stream("POST", "/api/messages?stream=true", json=body) as response:
                assert response.status_code == 200
                raw = "".join(response.iter_text())
            events = [
                (block.split("\n")[0].removeprefix("event: "),
                 json.loads(block.split("\n")[1].removeprefix("data: ")))
                for block in raw.strip().split("\n\n")
            ]  # fmt: skip
            tools = [data for name, data in events if name == "tool"]
            assert (
                tools
                == [
                    {"name": "book", "state": "started"},
                    {"name": "book", "state": "done"},
                ]
                * 2
            )
            assert events[-1][0] == "done" and events[-1][1]["reply"].startswith("results: ")
            # The first tool event comes before any text.
            assert events[0][0] == "tool"
            services.orchestrator.flush_usage()
            usage = client.get("/api/usage").json()
            assert usage["tool_calls"] == 2, usage
        services.close()
