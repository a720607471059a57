"""``keyturn worker``: a separate process delivers the outbox of ``keyturn serve``.

The API runs with ``KEYTURN_OUTBOX_WORKER=off`` and queues mail only; a ``keyturn worker``
process on the same data dir (same SQLite file, same dev secret key) delivers it to a
real SMTP server and stops cleanly on SIGTERM (DESIGN.md section 6).
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from e2e.conftest import StartServer
from e2e.processes import (
    COMMAND_TIMEOUT,
    LOW_ARGON2,
    START_DEADLINE,
    STOP_DEADLINE,
    keyturn_env,
    keyturn_executable,
    run_keyturn,
)
from helpers import PASSWORD, new_email
from smtp_server import SmtpServer, extract_token

pytestmark = pytest.mark.slow

STARTED = re.compile(r"outbox worker (\S+) started")


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    def output(self) -> str:
        out = self.stdout_path.read_text(encoding="utf-8", errors="replace")
        err = self.stderr_path.read_text(encoding="utf-8", errors="replace")
        return f"--- stdout ---\n{out}\n--- stderr ---\n{err}"

    def wait_started(self) -> str:
        """Waits (bounded) for the start line, printed once the signal handlers are set."""
        deadline = time.monotonic() + START_DEADLINE
        while not (found := STARTED.search(self.output())):
            assert self.process.poll() is None, f"worker exited early\n{self.output()}"
            assert time.monotonic() < deadline, f"worker never started\n{self.output()}"
            time.sleep(0.05)
        return found.group(1)

    def terminate(self) -> int:
        """SIGTERM, then a bounded wait for the exit code (killed and failed past it)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise AssertionError(f"worker ignored SIGTERM\n{self.output()}") from None


SpawnWorker = Callable[..., Worker]


@pytest.fixture
def spawn_worker(tmp_path: Path) -> Iterator[SpawnWorker]:
    started: list[Worker] = []

    def spawn(env: dict[str, str], *args: str) -> Worker:
        n = len(started)
        stdout_path = tmp_path / f"worker-{n}.stdout.log"
        stderr_path = tmp_path / f"worker-{n}.stderr.log"
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            process = subprocess.Popen(
                [keyturn_executable(), "worker", *args],
                env=env,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )
        worker = Worker(process, stdout_path, stderr_path)
        started.append(worker)
        return worker

    yield spawn
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait(timeout=10)


def _status(env: dict[str, str]) -> dict[str, int]:
    result = run_keyturn(["outbox", "status"], env)
    assert result.returncode == 0, result.stderr
    return {
        status: int(count)
        for status, count in re.findall(
            r"^(pending|sending|sent|dead)\s+(\d+)$", result.stdout, re.M
        )
    }


def test_a_separate_worker_process_delivers_what_the_api_queued(
    start_server: StartServer, spawn_worker: SpawnWorker, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    with SmtpServer() as smtp:
        settings = {"KEYTURN_SMTP_URL": smtp.url, **LOW_ARGON2}
        server = start_server({**settings, "KEYTURN_OUTBOX_WORKER": "off"}, data_dir=data_dir)
        email = new_email()
        with server.client() as http:
            answer = http.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
            assert answer.status_code == 202, answer.text

        env = keyturn_env(data_dir, settings)
        # The API only queued it.
        assert _status(env) == {"pending": 1, "sending": 0, "sent": 0, "dead": 0}
        assert smtp.messages == []

        worker = spawn_worker(env, "--poll-seconds", "0.1")
        owner = worker.wait_started()
        (mail,) = smtp.wait_for(1, timeout=COMMAND_TIMEOUT)
        assert str(mail["To"]) == email
        assert extract_token(mail)
        deadline = time.monotonic() + START_DEADLINE
        while (counts := _status(env))["sent"] != 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert counts == {"pending": 0, "sending": 0, "sent": 1, "dead": 0}

        assert worker.terminate() == 0, worker.output()
        assert owner
        assert len(smtp.messages) == 1
        server.assert_stopped_cleanly()


def test_sigterm_stops_an_idle_worker_without_waiting_for_its_next_poll(
    spawn_worker: SpawnWorker, tmp_path: Path
) -> None:
    """SIGTERM must end the wait between rounds; a 60 s poll exceeds the stop bound."""
    env = keyturn_env(tmp_path / "data", {"KEYTURN_SMTP_URL": "smtp://127.0.0.1:9", **LOW_ARGON2})
    worker = spawn_worker(env, "--poll-seconds", "60")
    worker.wait_started()
    assert worker.terminate() == 0, worker.output()
