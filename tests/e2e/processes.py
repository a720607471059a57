"""Real ``keyturn`` processes for the end-to-end tests (DESIGN.md section 8).

Every process gets an environment built here: the caller's environment minus every
``KEYTURN_*`` variable (so a developer's shell never leaks into a test), plus exactly the
settings the test names. Output goes to files in the test's ``tmp_path`` so a failure can
show what the server said.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from net import free_port

# Bounds, not expectations: nothing asserts how long anything took.
START_DEADLINE = 60.0
STOP_DEADLINE = 45.0  # above uvicorn's 30 s graceful-shutdown timeout
COMMAND_TIMEOUT = 120.0

# Cheap hashing for tests that are not about the hash cost (DESIGN.md section 8).
LOW_ARGON2 = {"KEYTURN_ARGON2_MEMORY_KIB": "1024", "KEYTURN_ARGON2_TIME_COST": "1"}
# Replicas behind a balancer share one public issuer; without it each dev replica would
# name its own port (issue 13 item 2) and refuse the other's tokens.
REPLICA_ISSUER = "http://keyturn.replicas.test"


def replica_env(
    postgres_url: str, redis_prefix: str, secret_key: str, *, redis_url: str | None = None
) -> dict[str, str]:
    """The settings every replica of one deployment shares (PostgreSQL, Redis, key, issuer).

    ``redis_url`` names a private ``redis-server``; unset, the shared test Redis.
    """
    return {
        "KEYTURN_DATABASE_URL": postgres_url,
        "KEYTURN_REDIS_URL": redis_url or os.environ["KEYTURN_TEST_REDIS_URL"],
        "KEYTURN_REDIS_PREFIX": redis_prefix,
        "KEYTURN_SECRET_KEY": secret_key,
        "KEYTURN_ISSUER": REPLICA_ISSUER,
        **LOW_ARGON2,
    }


# Tests of several real replicas on the shared servers (they run in CI's second run).
SHARED_SERVER_MARKS = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.skipif(
        not (
            os.environ.get("KEYTURN_TEST_DATABASE_URL") and os.environ.get("KEYTURN_TEST_REDIS_URL")
        ),
        reason="replicas need KEYTURN_TEST_DATABASE_URL and KEYTURN_TEST_REDIS_URL",
    ),
]


def keyturn_executable() -> str:
    """The ``keyturn`` console script of the interpreter running the tests."""
    beside = Path(sys.executable).parent / "keyturn"
    if beside.exists():
        return str(beside)
    found = shutil.which("keyturn")
    if found is None:
        raise RuntimeError("the keyturn console script is not installed (pip install -e .)")
    return found


def keyturn_env(data_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """``os.environ`` without any ``KEYTURN_*`` variable, plus the data dir and ``extra``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("KEYTURN_")}
    # Unbuffered so log lines reach the capture file as they happen (tests poll it).
    env["PYTHONUNBUFFERED"] = "1"
    env["KEYTURN_DATA_DIR"] = str(data_dir)
    # The tests read the server's log lines as JSON (dev's default is the console format).
    env["KEYTURN_LOG_FORMAT"] = "json"
    env.update(extra or {})
    return env


def run_keyturn(
    args: list[str], env: Mapping[str, str], *, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs one ``keyturn`` command to completion (bounded) and captures its output."""
    return subprocess.run(
        [keyturn_executable(), *args],
        env=dict(env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


def run_in_process(
    args: list[str], env: Mapping[str, str], *, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``args`` through the same Typer app in this process, answered like ``run_keyturn``.

    Each ``keyturn`` process spends about 2 s importing the application before it does
    anything. Tests of what a command does (not of the console script, the terminal or the
    process) run it here; the real processes of the e2e tests cover the console script.
    """
    from typer.testing import CliRunner

    from keyturn.cli.main import app

    result = CliRunner().invoke(app, args, input=stdin, env=dict(env))
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


@dataclass
class Server:
    """One ``keyturn serve`` process listening on ``base_url``."""

    base_url: str
    port: int
    data_dir: Path
    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    returncode: int | None = field(default=None)

    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    def output(self) -> str:
        """Both streams, for failure messages."""
        err = self.stderr_path.read_text(encoding="utf-8", errors="replace")
        return f"--- stdout ---\n{self.stdout()}\n--- stderr ---\n{err}"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30.0)

    def signal(self, signum: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signum)

    def wait(self, timeout: float = STOP_DEADLINE) -> int:
        """Waits for the exit; kills after ``timeout`` and fails the test."""
        try:
            self.returncode = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise AssertionError(
                f"keyturn serve did not exit within {timeout}s of SIGTERM\n{self.output()}"
            ) from None
        return self.returncode

    def stop(self) -> int:
        """Graceful stop (SIGTERM, bounded wait); returns the exit code."""
        if self.returncode is not None:
            return self.returncode
        self.signal(signal.SIGTERM)
        return self.wait()

    def assert_stopped_cleanly(self) -> None:
        """Stops (if needed) and checks the shutdown ran to its end and exited 0."""
        returncode = self.stop()
        assert returncode == 0, f"exit {returncode}\n{self.output()}"
        output = self.stdout()
        assert "Application shutdown complete." in output, self.output()
        assert '"stopped"' in output, self.output()

    def wait_for_output(self, needle: str, timeout: float = START_DEADLINE) -> None:
        """Polls the stdout capture until ``needle`` appears (bounded)."""
        deadline = time.monotonic() + timeout
        while needle not in self.stdout():
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} never appeared in the output\n{self.output()}")
            time.sleep(0.02)


def spawn_server(
    workdir: Path, env: dict[str, str], *, name: str = "serve", port: int | None = None
) -> Server:
    """Starts ``keyturn serve`` on ``port`` or a free one (``KEYTURN_PORT``) without waiting.

    A caller passes ``port`` when a setting must name it first (an issuer on ``localhost``).
    """
    port = port or free_port()
    env = {**env, "KEYTURN_HOST": "127.0.0.1", "KEYTURN_PORT": str(port)}
    stdout_path = workdir / f"{name}-{port}.stdout.log"
    stderr_path = workdir / f"{name}-{port}.stderr.log"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(
            [keyturn_executable(), "serve"],
            env=env,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
    return Server(
        base_url=f"http://127.0.0.1:{port}",
        port=port,
        data_dir=Path(env["KEYTURN_DATA_DIR"]),
        process=process,
        stdout_path=stdout_path,
        stderr_path=stderr_path,
    )


def wait_healthy(server: Server, timeout: float = START_DEADLINE) -> None:
    """Polls ``GET /healthz`` until it answers 200; fails with the output if the process dies."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as http:
        while True:
            if server.process.poll() is not None:
                server.returncode = server.process.returncode
                raise AssertionError(
                    f"keyturn serve exited with {server.returncode} before it was healthy\n"
                    f"{server.output()}"
                )
            try:
                if http.get(f"{server.base_url}/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                server.process.kill()
                server.process.wait(timeout=10)
                raise AssertionError(
                    f"keyturn serve was not healthy within {timeout}s\n{server.output()}"
                )
            time.sleep(0.05)
