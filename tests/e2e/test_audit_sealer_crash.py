"""A sealer killed under load loses no audit event; another replica takes over (issue 17).

Two ``keyturn serve`` replicas on one PostgreSQL database (and Redis). Replica A seals every
50 ms, B every 300 ms, so A holds the sealer lock most of the time. Four clients send failed
logins (each audited in the request's own transaction) to A; A is killed with SIGKILL in the
middle, sealing or not. Afterwards B alone seals: every event A answered for is in the
chain, the chain verifies, nothing is left unsealed. No timing is asserted: "B takes over"
is a bounded poll for the tail to drain.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from sqlalchemy import func, select

from e2e.processes import SHARED_SERVER_MARKS, Server, keyturn_env, replica_env, run_in_process
from helpers import TEST_SECRET, new_email
from keyturn.db.engine import create_engine
from keyturn.db.models import AuditEventRow

pytestmark = SHARED_SERVER_MARKS

CLIENTS = 4
# Bounds, not timings: the load stops by itself, the takeover poll gives up loudly.
LOAD_BOUND = 30.0
TAKEOVER_BOUND = 60.0


def _failed_logins(server: Server, stop: threading.Event, answered: list[int]) -> None:
    with httpx.Client(base_url=server.base_url, timeout=10.0) as http:
        deadline = time.monotonic() + LOAD_BOUND
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                answer = http.post(
                    "/v1/auth/login", json={"email": new_email(), "password": "wrong pw 1234"}
                )
            except httpx.TransportError:
                return  # the replica died: requests in flight on it fail, as they may
            answered.append(answer.status_code)


def _verify(env: dict[str, str]) -> str:
    verified = run_in_process(["audit", "verify"], env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    return verified.stdout


def _count_failed_logins(url: str) -> int:
    async def count() -> int:
        engine = create_engine(url)
        try:
            async with engine.connect() as connection:
                query = select(func.count()).where(AuditEventRow.type == "login.failed")
                return int(await connection.scalar(query) or 0)
        finally:
            await engine.dispose()

    return asyncio.run(count())


def test_killing_the_sealer_under_load_loses_nothing(
    start_server: Callable[..., Server], postgres_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    shared = {
        **replica_env(postgres_url, redis_prefix, TEST_SECRET),
        "KEYTURN_OUTBOX_WORKER": "off",
    }
    a = start_server(
        {**shared, "KEYTURN_AUDIT_SEAL_SECONDS": "0.05"}, data_dir=tmp_path / "a", name="a"
    )
    b = start_server(
        {**shared, "KEYTURN_AUDIT_SEAL_SECONDS": "0.3"}, data_dir=tmp_path / "b", name="b"
    )
    env = keyturn_env(tmp_path / "cli", shared)

    # The database is this test run's (shared by the tests before this one): count from here.
    before = _count_failed_logins(postgres_url)
    answered: list[int] = []
    stop = threading.Event()
    clients = [
        threading.Thread(target=_failed_logins, args=(a, stop, answered)) for _ in range(CLIENTS)
    ]
    for client in clients:
        client.start()
    deadline = time.monotonic() + LOAD_BOUND
    while len(answered) < 150 and time.monotonic() < deadline:
        time.sleep(0.01)
    a.signal(signal.SIGKILL)
    a.wait()
    stop.set()
    for client in clients:
        client.join(timeout=LOAD_BOUND)
    refused = answered.count(401)
    print(f"answered before the kill: {len(answered)} ({refused} x 401); A exit {a.returncode}")
    assert a.returncode == -signal.SIGKILL
    assert refused == len(answered) >= 150

    # B, the only sealer left, drains the tail on its own.
    deadline = time.monotonic() + TAKEOVER_BOUND
    report = _verify(env)
    while "unsealed: 0 rows" not in report:
        assert time.monotonic() < deadline, f"B never sealed the tail:\n{report}\n{b.output()}"
        time.sleep(0.2)
        report = _verify(env)
    print(report)
    # Every answered failure was committed with its event before the answer left A; a
    # request A committed but never answered adds one more, never one less.
    recorded = _count_failed_logins(postgres_url) - before
    assert refused <= recorded <= refused + CLIENTS, (refused, recorded)
    assert "audit chain intact" in report
    b.assert_stopped_cleanly()
