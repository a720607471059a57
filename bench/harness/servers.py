"""Processes the harness owns (servers under test) and the databases it creates.

Every process starts in its own session with its output in the run's work directory;
``stop()`` sends SIGTERM, waits, then kills. Databases are created with a random name
and dropped at the end (``DROP DATABASE ... WITH (FORCE)``), whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

START_TIMEOUT = 90.0
STOP_TIMEOUT = 40.0  # above uvicorn's 30 s graceful-shutdown timeout


class HarnessError(RuntimeError):
    """Something the benchmark needs did not work; the message says what."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Managed:
    """One server process started by the harness."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, path: str = "/healthz", timeout: float = START_TIMEOUT) -> None:
        """Polls ``path`` until it answers below 500; fails with the log if the process dies."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as http:
            while True:
                if self.process.poll() is not None:
                    raise HarnessError(
                        f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if http.get(self.base_url + path).status_code < 500:
                        return
                if time.monotonic() > deadline:
                    # Not yet owned by any cleanup stack: stop it here, never leave it behind.
                    self.stop()
                    raise HarnessError(f"{self.name} not ready in {timeout}s:\n{self.log_tail()}")
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            # Its own session: the whole group (uvicorn workers too) goes.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    workdir: Path,
    cwd: Path | None = None,
    port: int,
) -> Managed:
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Managed(name=name, port=port, process=process, log_path=log_path)


def run_command(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    cwd: Path | None = None,
    timeout: float = 600.0,
) -> str:
    """Runs a command to completion; its stdout, or a HarnessError with its output."""
    done = subprocess.run(
        list(argv),
        env=dict(env) if env is not None else None,
        input=stdin,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise HarnessError(f"{' '.join(argv[:3])} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


@dataclass(frozen=True)
class Database:
    """A PostgreSQL database owned by this run."""

    server: str  # postgresql://user@host:port
    name: str

    @property
    def dsn(self) -> str:
        return f"{self.server}/{self.name}"

    @property
    def sqlalchemy_url(self) -> str:
        # A loopback server without TLS: ssl=disable saves asyncpg's TLS attempt (its default
        # sslmode=prefer) on every new connection. Never for a server reached over a network.
        return self.dsn.replace("postgresql://", "postgresql+asyncpg://", 1) + "?ssl=disable"


async def _admin(server: str, statement: str) -> None:
    conn = await asyncpg.connect(f"{server}/postgres", timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def create_database(server: str, prefix: str) -> Database:
    name = f"{prefix}_{secrets.token_hex(4)}"
    # The name is ours (a fixed prefix and hex), never input: safe to place in the DDL.
    asyncio.run(_admin(server, f'CREATE DATABASE "{name}"'))
    return Database(server=server, name=name)


def drop_database(database: Database) -> None:
    print(f"dropping database {database.name}", flush=True)
    asyncio.run(_admin(database.server, f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)'))


def start_redis(workdir: Path) -> Managed:
    """A private ``redis-server`` on a free loopback port, without persistence (the soak's
    own, so its ``used_memory`` is Keyturn's alone); stopped by the caller."""
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    process = spawn(
        "redis-server", [*argv, "--appendonly", "no", "--dir", str(workdir)],
        env=os.environ, workdir=workdir, port=port,
    )  # fmt: skip
    deadline = time.monotonic() + 10.0
    while True:
        if process.process.poll() is not None:
            raise HarnessError(f"redis-server exited:\n{process.log_tail()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return process
        if time.monotonic() > deadline:
            process.stop()
            raise HarnessError(f"redis-server not ready in 10 s:\n{process.log_tail()}")
        time.sleep(0.05)
