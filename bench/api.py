"""Requests/s of `GET /api/users/{id}/secretary` vs a bare FastAPI constant endpoint.

Both run under uvicorn (one worker) on loopback in this run; one asyncio client keeps
`--clients` requests in flight for `--seconds` against each.

Run: python -m bench.api [--clients 50] [--seconds 10] [--users 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory

import httpx

from bench.common import Row, print_table
from secretaries_core.catalog.models import AssistantCreate
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.catalog.users_csv import UserRow
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine
from tests.servers import free_port

TOKEN = "bench-token"


@contextmanager
def running(cmd: list[str], port: int, env: dict[str, str], probe: str) -> Iterator[str]:
    """Start a server process and wait until `probe` answers."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(base + probe, timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"server did not start: {proc.communicate()[1]!r}") from None
            time.sleep(0.1)
    try:
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


async def load(url_for: list[str], clients: int, seconds: float, headers: dict[str, str]) -> float:
    """Requests per second with `clients` requests in flight; every answer must be 200."""
    done = 0
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, headers=headers, timeout=30) as client:

        async def worker(offset: int) -> None:
            nonlocal done
            i = offset
            while time.perf_counter() < stop:
                response = await client.get(url_for[i % len(url_for)])
                if response.status_code != 200:
                    raise RuntimeError(f"{response.status_code}: {response.text}")
                done += 1
                i += clients

        start = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in range(clients)))
        return done / (time.perf_counter() - start)


WRK_SCRIPT = """
request = function()
  return wrk.format("GET", string.format(wrk.path, math.random(%d, %d)))
end
"""


def wrk_load(url: str, clients: int, seconds: float, headers: dict[str, str], ids: range) -> float:
    """Requests per second measured by wrk (2 threads); `%%d` in the URL takes a random id."""
    with TemporaryDirectory() as tmp:
        script = Path(tmp) / "ids.lua"
        script.write_text(WRK_SCRIPT % (ids.start, ids.stop - 1))
        # wrk takes whole seconds only.
        cmd = ["wrk", "-t2", f"-c{clients}", f"-d{max(1, round(seconds))}s", "-s", str(script)]
        for name, value in headers.items():
            cmd += ["-H", f"{name}: {value}"]
        out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    line = next(x for x in out.splitlines() if x.startswith("Requests/sec:"))
    return float(line.split()[1])


def measure(
    base: str, path: str, clients: int, seconds: float, headers: dict[str, str], ids: range
) -> float:
    """wrk when installed (it does not compete with the server for the GIL), else httpx."""
    if shutil.which("wrk"):
        return wrk_load(base + path, clients, seconds, headers, ids)
    urls = [base + path.replace("%d", str(i)) for i in ids]
    return asyncio.run(load(urls, clients, seconds, headers))


def run(clients: int, seconds: float, users: int) -> list[Row]:
    """One row: our resolution endpoint vs the constant endpoint, as seconds per request."""
    with TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'api.db'}"
        engine = make_engine(url)
        schema.upgrade(engine)
        registry = SecretaryRegistry(engine)
        registry.create_secretary(
            AssistantCreate(name="alice", model="echo", prompt="A", is_default=True)
        )
        registry.import_users([UserRow(1000 + i, None) for i in range(users)])
        engine.dispose()
        env = {**os.environ, "SECRETARIES_DATABASE_URL": url, "SECRETARIES_API_TOKEN": TOKEN}
        ours_port, bare_port = free_port(), free_port()
        ours_cmd = [sys.executable, "-m", "secretaries_cli", "serve", "--port", str(ours_port)]
        ids = range(1000, 1000 + users)
        with running(ours_cmd, ours_port, env, "/healthz") as base:
            ours = measure(
                base,
                "/api/users/%d/secretary",
                clients,
                seconds,
                {"Authorization": f"Bearer {TOKEN}"},
                ids,
            )
        bare_cmd = [sys.executable, "-m", "bench.bare_app", str(bare_port)]
        with running(bare_cmd, bare_port, env, "/constant") as base:
            bare = measure(base, "/constant", clients, seconds, {}, ids)
    return [
        Row(
            f"GET /api/users/{{id}}/secretary, {clients} clients "
            f"({ours:,.0f} req/s vs {bare:,.0f})",
            1 / ours,
            1 / bare,
            "bare FastAPI constant endpoint",
        )
    ]


def main() -> None:
    """Parse arguments, run, print."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--users", type=int, default=1000)
    args = parser.parse_args()
    print_table(
        "REST API (time per request; 1 / throughput)", run(args.clients, args.seconds, args.users)
    )


if __name__ == "__main__":
    main()
