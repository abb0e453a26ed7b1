"""deploy/: the compose stack's own command lines run as processes, the alert rules under
promtool, and every metric the dashboard and the alerts use checked against live scrapes.

Docker is not available to the test suite, so the compose file is read and each
`secretaries` service's `command` (and the shared environment) is started as a process
against a private PostgreSQL and Redis: the one-shot `db upgrade`, `serve`, two `worker`
replicas and `bot` on a webhook. A message goes in through the webhook and comes out of
the sender once; then serve's, both workers' and the bot's `/metrics` are scraped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import yaml

from secretaries_core.catalog.models import AssistantCreate
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.plumbing.db import make_engine
from tests.llm_server import llm_server
from tests.servers import free_port
from tests.telegram.bot_api import TOKEN, bot_api
from tests.telegram.test_bot_faults import _answers, _start
from tests.telegram.test_webhook import _up

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SECRET = "compose-secret"


def _promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is required (Debian: apt-get install prometheus); .ci/run installs it"
    return found


def test_the_alert_rules_pass_promtool() -> None:
    promtool = _promtool()
    checked = subprocess.run(
        [promtool, "check", "rules", "alerts.yml"],
        cwd=DEPLOY / "prometheus",
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"],
        cwd=DEPLOY / "prometheus",
        capture_output=True,
        text=True,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    names = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    # queue lag, dead letters, rollbacks, dropped replies, 429s, model and tool errors
    assert {
        "SecretariesQueueLagging",
        "SecretariesDeadLetters",
        "SecretariesRolledBack",
        "SecretariesRepliesDropped",
        "SecretariesTelegram429",
        "SecretariesModelErrors",
        "SecretariesToolErrors",
    } <= names


def _expressions() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "secretaries.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    exprs += [str(r["expr"]) for g in rules["groups"] for r in g["rules"]]
    return exprs


def _series_names(exposition: str) -> set[str]:
    """Every series name a scrape can carry, from its # TYPE lines."""
    names: set[str] = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", exposition, re.M):
        names.add(name)
        if kind == "counter":
            names |= {f"{name}_total", f"{name}_created"}
        elif kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"}
    return names


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def _service_command(compose: dict[str, Any], name: str, ports: dict[str, str]) -> list[str]:
    command = [str(part) for part in compose["services"][name]["command"]]
    return [ports.get(part, "127.0.0.1" if part == "0.0.0.0" else part) for part in command]


def test_the_compose_services_run_as_processes_and_answer_through_the_webhook(
    tmp_path: Path, pg_url: str, redis_url: str
) -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    shared = compose["x-secretaries"]["environment"]
    assert compose["services"]["worker"]["deploy"]["replicas"] == 2
    redis_args = compose["services"]["redis"]["command"]
    assert "--appendonly" in redis_args and "noeviction" in redis_args
    api_port = free_port()
    prefix = f"dp{uuid.uuid4().hex[:6]}:"
    with bot_api() as (api_url, api), llm_server() as (llm_url, _script):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SECRETARIES_")}
        env.update({k: str(v) for k, v in shared.items()})
        env.update(
            SECRETARIES_HOME=str(tmp_path / "home"),
            SECRETARIES_DATABASE_URL=pg_url,
            SECRETARIES_QUEUE_URL=redis_url,
            SECRETARIES_CONTEXT_URL=redis_url,
            SECRETARIES_REDIS_PREFIX=prefix,
            SECRETARIES_METRICS_HOST="127.0.0.1",
            SECRETARIES_OPENAI_BASE_URL=llm_url,
            SECRETARIES_TELEGRAM_TOKEN=TOKEN,
            SECRETARIES_TELEGRAM_API_URL=api_url,
            SECRETARIES_TELEGRAM_WEBHOOK_SECRET=SECRET,
            SECRETARIES_TELEGRAM_WEBHOOK_URL=f"http://127.0.0.1:{api_port}/telegram/webhook",
            SECRETARIES_API_TOKEN="compose-admin-token",
        )
        migrate = _service_command(compose, "migrate", {})
        done = subprocess.run(
            [sys.executable, "-m", "secretaries_cli", *migrate],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        engine = make_engine(pg_url)
        SecretaryRegistry(engine).create_secretary(
            AssistantCreate(
                name="alice", model="openai/m", prompt="You are alice.", is_default=True
            )
        )
        engine.dispose()

        metrics_ports = {"w1": free_port(), "w2": free_port(), "bot": free_port()}
        logs = {n: (tmp_path / f"{n}.log").open("w") for n in ("serve", "w1", "w2", "bot")}
        procs = [
            _start(_service_command(compose, "serve", {"8000": str(api_port)}), env, logs["serve"])
        ]
        for w in ("w1", "w2"):
            cmd = _service_command(compose, "worker", {"9100": str(metrics_ports[w])})
            procs.append(_start(cmd, env, logs[w]))
        bot_cmd = _service_command(compose, "bot", {"9100": str(metrics_ports["bot"])})
        procs.append(_start(bot_cmd, env, logs["bot"]))
        try:
            api.wait(lambda: _up(api_port), timeout=60)
            api.wait(lambda: api.webhook is not None, timeout=60)
            for i in range(4):
                api.send(801 + i, f"hello {i}")
            for i in range(4):
                api.wait(lambda u=801 + i: len(_answers(api, u)) == 1, timeout=60)
            scrapes = [_scrape(f"http://127.0.0.1:{api_port}/metrics")]
            scrapes += [_scrape(f"http://127.0.0.1:{p}/metrics") for p in metrics_ports.values()]
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(timeout=60)
            for log in logs.values():
                log.close()
    # Both workers answered (each owns some partitions), and said so in their metrics.
    answered = [
        re.findall(r'^secretaries_messages_total\{secretary="alice"\} (\S+)$', s, re.M)
        for s in scrapes[1:3]
    ]
    assert sum(float(v[0]) for v in answered if v) == 4.0, answered
    exposed = set().union(*(_series_names(s) for s in scrapes))
    used = {m for e in _expressions() for m in re.findall(r"\bsecretaries_[a-z0-9_]+", e)}
    assert used, "no expression names a metric"
    assert used <= exposed, sorted(used - exposed)
    for name in ("serve", "w1", "w2", "bot"):
        assert "Traceback" not in (tmp_path / f"{name}.log").read_text(), name
