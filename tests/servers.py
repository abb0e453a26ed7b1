"""Private PostgreSQL and Redis servers for the suite, started from the installed binaries.

Each server listens on a free loopback port and lives in a temporary directory that is
removed afterwards. A URL in the environment replaces the private server. If neither
works the suite fails: a missing backend is an error, never a skip.
"""

from __future__ import annotations

import glob
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any


class ServerError(RuntimeError):
    """A test server could not be started."""


@contextmanager
def app_in_thread(app: Any, *, name: str = "app", backlog: int = 128) -> Iterator[int]:
    """Serve an aiohttp `app` on a free loopback port from a thread (and event loop) of
    its own; yield the port. The loop and the thread end with the block."""
    import asyncio
    import threading

    from aiohttp import web

    loop = asyncio.new_event_loop()
    state: dict[str, Any] = {}

    async def start() -> None:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0, backlog=backlog).start()
        state["runner"], state["port"] = runner, runner.addresses[0][1]

    thread = threading.Thread(target=loop.run_forever, daemon=True, name=name)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield int(state["port"])
    finally:
        asyncio.run_coroutine_threadsafe(state["runner"].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _find(binary: str, patterns: list[str]) -> str:
    found = shutil.which(binary)
    if found:
        return found
    for pattern in patterns:
        hits = sorted(glob.glob(pattern))
        if hits:
            return hits[-1]
    raise ServerError(f"{binary} not found; install it (Debian: see .ci/run)")


def _as_postgres_user(cmd: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


class PrivatePostgres:
    """A private PostgreSQL server in a temporary directory, which tests can stop and start."""

    def __init__(self) -> None:
        pg_ctl = _find("pg_ctl", ["/usr/lib/postgresql/*/bin/pg_ctl"])
        self.bindir = Path(os.path.realpath(pg_ctl)).parent
        self.root = Path(tempfile.mkdtemp(prefix="secretaries-pg-"))
        self.data, self.port = self.root / "data", free_port()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")

    @property
    def url(self) -> str:
        """The admin URL (database `postgres`)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        """initdb, then start."""
        try:
            subprocess.run(
                _as_postgres_user(
                    [
                        str(self.bindir / "initdb"),
                        "-D",
                        str(self.data),
                        "-U",
                        "postgres",
                        "-A",
                        "trust",
                        "-E",
                        "UTF8",
                        "--no-sync",
                        "--no-locale",
                    ]
                ),
                check=True,
                capture_output=True,
            )
        except subprocess.CalledProcessError as exc:
            shutil.rmtree(self.root, ignore_errors=True)
            raise ServerError(f"initdb failed: {exc.stderr!r}") from exc
        self.start()

    def start(self) -> None:
        """Start the server (again) on the same port."""
        opts = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        try:
            subprocess.run(
                _as_postgres_user(
                    [
                        str(self.bindir / "pg_ctl"),
                        "-D",
                        str(self.data),
                        "-o",
                        opts,
                        "-l",
                        str(self.root / "log"),
                        "-w",
                        "-t",
                        "60",
                        "start",
                    ]
                ),
                check=True,
                capture_output=True,
            )
        except subprocess.CalledProcessError as exc:
            log = (self.root / "log").read_text() if (self.root / "log").exists() else ""
            raise ServerError(f"PostgreSQL did not start: {exc.stderr!r} {log}") from exc

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast`: connections are cut, as in a failover)."""
        subprocess.run(
            _as_postgres_user(
                [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"]
            ),
            capture_output=True,
        )

    def close(self) -> None:
        """Stop for good and remove the directory."""
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A started `PrivatePostgres`, removed afterwards."""
    server = PrivatePostgres()
    server.init()
    try:
        yield server
    finally:
        server.close()


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield an admin URL (database `postgres`) of a private PostgreSQL server."""
    with private_postgres() as server:
        yield server.url


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    for _ in range(200):
        port = random.randint(20000, 45000)
        if _port_is_free(port) and _port_is_free(port + 10000):
            return port
    raise ServerError("no free port pair for a cluster node")


@contextmanager
def redis_server(*extra: str, port: int | None = None) -> Iterator[tuple[int, Path]]:
    """Yield (port, directory) of a private, non-persistent redis-server."""
    binary = _find("redis-server", [])
    root = Path(tempfile.mkdtemp(prefix="secretaries-redis-"))
    port = port or free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(root),
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, proc)
        yield port, root
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(root, ignore_errors=True)


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"server on port {port} exited with {proc.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise ServerError(f"nothing listens on port {port} after {timeout}s")


@contextmanager
def redis_cluster(masters: int = 3) -> Iterator[list[int]]:
    """Yield the ports of a private Redis Cluster of `masters` primaries, no replicas."""
    cli = _find("redis-cli", [])
    with ExitStack() as stack:
        ports = []
        for _ in range(masters):
            port, _root = stack.enter_context(
                redis_server(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                    port=free_cluster_port(),
                )
            )
            ports.append(port)
        create = subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if create.returncode != 0:
            raise ServerError(f"redis-cli --cluster create failed: {create.stdout}{create.stderr}")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = [
                subprocess.run(
                    [cli, "-p", str(p), "cluster", "info"], capture_output=True, text=True
                ).stdout
                for p in ports
            ]
            if all("cluster_state:ok" in s for s in states):
                break
            time.sleep(0.1)
        else:
            raise ServerError("Redis Cluster did not reach cluster_state:ok")
        yield ports


class RestartableRedis:
    """A private redis-server that tests stop and start again on the same port.

    `aof=True` persists with AOF (`appendfsync everysec`, what docs/operations.md asks of
    the queue's Redis); without it a restart loses everything, as an unconfigured Redis
    does. `restart()` goes straight from a running server to a new one: the clients'
    pooled connections are stale, and nothing calls in between.
    """

    def __init__(self, *, aof: bool) -> None:
        self.binary = _find("redis-server", [])
        self.root = Path(tempfile.mkdtemp(prefix="secretaries-redis-r-"))
        self.port = free_port()
        self.aof = aof
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """redis://127.0.0.1:PORT/0"""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (again) on the same port and directory."""
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "everysec"]
            if self.aof
            else [
                "--appendonly",
                "no",
            ]
        )
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                *persistence,
                "--dir",
                str(self.root),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.port, self.proc)
        # Loading the AOF: commands fail with LOADING until it is done.
        cli = _find("redis-cli", [])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ping = subprocess.run(
                [cli, "-p", str(self.port), "ping"], capture_output=True, text=True
            )
            if "PONG" in ping.stdout:
                return
            time.sleep(0.05)
        raise ServerError("restarted Redis did not answer PING")

    def stop(self) -> None:
        """SIGTERM (Redis writes its AOF buffer and exits) and wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)

    def restart(self, down_for: float = 0.0) -> None:
        """Stop, stay down `down_for` seconds, start on the same port."""
        self.stop()
        if down_for:
            time.sleep(down_for)
        self.start()

    def close(self) -> None:
        """Stop for good and remove the directory."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def restartable_redis(*, aof: bool) -> Iterator[RestartableRedis]:
    """A started `RestartableRedis`, closed afterwards."""
    server = RestartableRedis(aof=aof)
    try:
        server.start()
        yield server
    finally:
        server.close()


def tls_files(root: Path) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate for 127.0.0.1 signed by it, made by `openssl`.

    Returns (ca.crt, server.crt, server.key) under `root`.
    """
    openssl = _find("openssl", [])
    ca_key, ca_crt = root / "ca.key", root / "ca.crt"
    key, csr, crt = root / "server.key", root / "server.csr", root / "server.crt"
    ext = root / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ca = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA"]
    server = ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1"]
    sign = ["x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key)]
    for command in (
        [*ca, "-keyout", str(ca_key), "-out", str(ca_crt)],
        [*server, "-keyout", str(key), "-out", str(csr)],
        [*sign, "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(crt)],
    ):
        subprocess.run([openssl, *command], check=True, capture_output=True)
    return ca_crt, crt, key


@contextmanager
def tls_redis_server(root: Path) -> Iterator[tuple[int, str]]:
    """A private redis-server that also listens with TLS (a private CA, see `tls_files`).

    Yields (its plain port, the rediss:// URL of its TLS port, verified against the CA).
    """
    ca, crt, key = tls_files(root)
    tls_port = free_port()
    tls = ["--tls-port", str(tls_port), "--tls-cert-file", str(crt), "--tls-key-file", str(key)]
    tls += ["--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"]
    with redis_server(*tls) as (port, _root):
        yield port, f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={ca}"


@contextmanager
def threaded_http(handler: type[Any]) -> Iterator[str]:
    """Yield the base URL of a stdlib HTTP server running `handler` on a thread."""
    import threading
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
