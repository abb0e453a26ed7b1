"""CLI start-up: CPU of the whole process for every command, vs `python -c "import sqlalchemy"`.

Every command of the tree twice: its `--help`, and a real call on a catalog made for the
run (the embedded SQLite database, the echo model, a private Redis for the queue
commands, a local HTTP function for `tools call`). The long-running ones (`serve`,
`worker`, `bot`) are measured refusing a bad configuration, which they must do before
anything heavy is imported. Each figure is the least CPU (user + system, read from the
kernel's accounting of the child) of `--runs` runs; each command's runs are interleaved
with runs of the baseline, whose least is that row's baseline; target ≤ 1.5x. Calls
that change something get fresh names on each run, so every run does the same work.

The project's packages are byte-compiled first, as installing the wheel does (the
baseline's SQLAlchemy is read compiled too).

Run: python -m bench.startup [--runs 3] [--only SUBSTRING]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import typer.main

from bench.common import Row, print_table
from secretaries_cli.app import app
from tests.servers import redis_server, threaded_http

Argv = Callable[[int], list[str]]
ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("secretaries_core", "secretaries_cli", "secretaries_api", "secretaries_telegram")


def cpu_of(cmd: list[str], env: dict[str, str]) -> tuple[float, int]:
    """(user + system CPU seconds, exit code) of one run of `cmd`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    spent = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return spent, done.returncode


def command_paths() -> list[list[str]]:
    """Every command of the tree, as its words (`["rollout", "start"]`)."""
    found: list[list[str]] = []

    def walk(group: Any, path: list[str]) -> None:
        for name, command in sorted(group.commands.items()):
            if hasattr(command, "commands"):  # a group (Typer carries its own click)
                walk(command, [*path, name])
            else:
                found.append([*path, name])

    walk(typer.main.get_command(app), [])
    return found


@contextmanager
def http_function() -> Iterator[str]:
    """A local HTTP function for `tools call`: answers every POST with a small JSON."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.dumps({"events": ["09:00 stand-up"]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    with threaded_http(Handler) as base:
        yield f"{base}/call"


def real_calls(home: Path, function_url: str) -> dict[str, Argv]:
    """A real call of every command, by its words; `i` is the run's number."""
    suite, catalog, people = home / "suite.yaml", home / "catalog.yaml", home / "people.csv"
    schema = home / "schema.json"
    suite.write_text("cases:\n  - name: echo\n    message: hi\n    expect:\n      - contains: hi\n")
    people.write_text("telegram_id,username\n" + "".join(f"{900 + n},p{n}\n" for n in range(50)))
    return {
        "db upgrade": lambda i: ["db", "upgrade"],
        "db downgrade": lambda i: ["db", "downgrade", "head", "--yes"],
        "db current": lambda i: ["db", "current", "--json"],
        "create": lambda i: ["create", f"c{i}", "--model", "echo", "--prompt", "P"],
        "update": lambda i: ["update", "alice", "--description", f"take {i}"],
        "list": lambda i: ["list"],
        "show": lambda i: ["show", "alice"],
        "set-default": lambda i: ["set-default", "alice"],
        "deactivate": lambda i: ["deactivate", f"d{i}", "--reassign-to", "alice"],
        "activate": lambda i: ["activate", f"a{i}"],
        "delete": lambda i: ["delete", f"x{i}", "--yes"],
        "versions": lambda i: ["versions", "alice", "--json"],
        "diff": lambda i: ["diff", "alice", "1", "2"],
        "rollback": lambda i: ["rollback", "alice", "--to", "1"],
        "rollout start": lambda i: ["rollout", "start", f"ro{i}", "--percent", "10"],
        "rollout set": lambda i: ["rollout", "set", f"rs{i}", "--percent", "50"],
        "rollout status": lambda i: ["rollout", "status", f"rs{i}", "--json"],
        "rollout promote": lambda i: ["rollout", "promote", f"rp{i}"],
        "rollout abort": lambda i: ["rollout", "abort", f"ra{i}"],
        "pin": lambda i: ["pin", "1", "alice", "--version", "1"],
        "unpin": lambda i: ["unpin", "1", "alice"],
        "providers add": lambda i: ["providers", "add", f"p{i}", "--base-url", function_url],
        "providers list": lambda i: ["providers", "list"],
        "providers remove": lambda i: ["providers", "remove", f"p{i}"],
        "replay": lambda i: ["replay", "alice", "--users", "1", "--version", "1"],
        "eval": lambda i: ["eval", "alice", "--suite", str(suite), "--version", "2"],
        "export": lambda i: ["export", "--output", str(catalog)],
        "plan": lambda i: ["plan", str(catalog)],
        "apply": lambda i: ["apply", str(catalog), "--yes"],
        "users add": lambda i: ["users", "add", str(100 + i)],
        "users import": lambda i: ["users", "import", str(people)],
        "users list": lambda i: ["users", "list"],
        "users delete": lambda i: ["users", "delete", str(100 + i), "--yes"],
        "users limit": lambda i: ["users", "limit", "1", "--messages-per-day", "100"],
        "assign": lambda i: ["assign", "1", "alice"],
        "current": lambda i: ["current", "1"],
        "history": lambda i: ["history", "1"],
        "migrate-users": lambda i: ["migrate-users", "--to", "alice", "--dry-run"],
        "contexts stats": lambda i: ["contexts", "stats"],
        "contexts show": lambda i: ["contexts", "show", "1"],
        "contexts purge": lambda i: ["contexts", "purge", "--older-than", "30d"],
        "chat": lambda i: ["chat", "1", "hello"],
        "usage": lambda i: ["usage"],
        "worker": lambda i: ["worker"],  # refused: no queue URL (see below)
        "queue stats": lambda i: ["queue", "stats"],
        "queue dead-letters": lambda i: ["queue", "dead-letters"],
        "queue retry": lambda i: ["queue", "retry", "--all"],
        "queue repartition": lambda i: ["queue", "repartition", "16", "--yes"],
        "tools add": lambda i: [
            "tools",
            "add",
            f"t{i}",
            "--http",
            function_url,
            "--schema",
            str(schema),
        ],
        "tools list": lambda i: ["tools", "list"],
        "tools show": lambda i: ["tools", "show", "cal"],
        "tools remove": lambda i: ["tools", "remove", f"t{i}"],
        "tools call": lambda i: ["tools", "call", "cal", "--args", '{"day": "today"}'],
        "bot": lambda i: ["bot"],  # refused: no token
        "tokens create": lambda i: ["tokens", "create", f"k{i}", "--scope", "ingress"],
        "tokens list": lambda i: ["tokens", "list"],
        "tokens revoke": lambda i: ["tokens", "revoke", f"k{i}"],
        "serve": lambda i: ["serve"],  # refused: no API token
    }


def _constant(argv: list[str]) -> Argv:
    """The same arguments on every run."""
    return lambda _i: argv


# Refused on purpose: long-running processes, measured refusing a bad configuration.
REFUSED = {"worker", "bot", "serve"}


def _setup(exe: list[str], env: dict[str, str], runs: int, function_url: str) -> None:
    def ok(*args: str) -> None:
        subprocess.run([*exe, *args], env=env, check=True, stdout=subprocess.DEVNULL)

    ok("create", "alice", "--model", "echo", "--prompt", "A", "--default")
    ok("update", "alice", "--prompt", "A, briefly.")
    ok("create", "bob", "--model", "echo", "--prompt", "B")
    ok("users", "add", "1")
    ok("chat", "1", "hello")
    schema = Path(env["SECRETARIES_HOME"]) / "schema.json"
    schema.write_text('{"type": "object", "properties": {"day": {"type": "string"}}}')
    ok("tools", "add", "cal", "--http", function_url, "--schema", str(schema))
    ok("export", "--output", str(Path(env["SECRETARIES_HOME"]) / "catalog.yaml"))
    for i in range(runs):
        for name in (f"d{i}", f"a{i}", f"x{i}"):
            ok("create", name, "--model", "echo", "--prompt", "X")
        ok("deactivate", f"a{i}")
        for name in (f"ro{i}", f"rs{i}", f"rp{i}", f"ra{i}"):
            ok("create", name, "--model", "echo", "--prompt", "R")
            ok("update", name, "--prompt", "R, again.", "--draft")
        for name in (f"rs{i}", f"rp{i}", f"ra{i}"):
            ok("rollout", "start", name, "--percent", "10")


def compile_project() -> None:
    """Byte-compile the project's packages, as installing its wheel does: SQLAlchemy's
    modules are read compiled, and with PYTHONDONTWRITEBYTECODE set (or a read-only
    checkout) ours would otherwise be compiled from source by every run."""
    for package in PACKAGES:
        compileall.compile_dir(ROOT / package, quiet=2)


def run(runs: int, only: str = "") -> list[Row]:
    """Help and a real call of every command vs importing SQLAlchemy, in one run."""
    compile_project()
    exe = [sys.executable, "-m", "secretaries_cli"]
    rows: list[Row] = []
    with (
        TemporaryDirectory() as home,
        redis_server() as (port, _root),
        http_function() as function_url,
    ):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SECRETARIES_")}
        env["SECRETARIES_HOME"] = home
        queue_env = {**env, "SECRETARIES_QUEUE_URL": f"redis://127.0.0.1:{port}/0"}
        selected = [w for w in command_paths() if not only or only in " ".join(w)]
        # The per-run secretaries only when a selected command changes one of them.
        per_run = any(w[0] in ("activate", "deactivate", "delete", "rollout") for w in selected)
        _setup(exe, env, runs if per_run else 0, function_url)
        calls = real_calls(Path(home), function_url)
        for words in selected:
            name = " ".join(words)
            make = calls.get(name)
            call_env = queue_env if words[0] == "queue" else env
            # Interleaved with its own baseline runs: a virtual machine's speed drifts
            # over minutes, and a baseline taken once at the start would drift apart.
            floor = help_cpu = spent = float("inf")
            code = 0
            for i in range(runs):
                floor = min(floor, cpu_of([sys.executable, "-c", "import sqlalchemy"], env)[0])
                help_cpu = min(help_cpu, cpu_of([*exe, *words, "--help"], env)[0])
                if make is not None:
                    took, code = cpu_of([*exe, *make(i)], call_env)
                    spent = min(spent, took)
            rows.append(Row(f"{name} --help", help_cpu, floor, "import sqlalchemy"))
            if make is None:
                rows.append(Row(f"{name}: NO REAL CALL DEFINED", 0.0, floor, "import sqlalchemy"))
                continue
            note = " (refused)" if name in REFUSED else "" if code == 0 else f" (exit {code})"
            shown = " ".join(make(0))
            rows.append(Row(f"{shown}{note}", spent, floor, "import sqlalchemy"))
    return rows


def main() -> None:
    """Parse arguments, run, print."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="", help="Only commands whose words hold this.")
    args = parser.parse_args()
    rows = run(args.runs, args.only)
    print_table("CLI start-up: whole-process CPU, least of runs", rows)
    over = [row for row in rows if row.ratio > 1.5]
    print(f"\n{len(rows) - len(over)} of {len(rows)} within 1.5x; over: {len(over)}")


if __name__ == "__main__":
    main()
