"""Keyturn behind PgBouncer in transaction mode (issue 16 item 8): Debian's pgbouncer, run
privately on a free port with two server connections for every client, in front of a
database of this test's own.

With ``KEYTURN_DATABASE_STATEMENT_CACHE=false`` ``keyturn migrate`` and ``keyturn serve``
work through it: concurrent signups, logins, refreshes and ``/v1/me`` answer without one
error. The same traffic with the setting left at its default fails (asyncpg's named
statements are missing on, or mean another statement on, the next server connection),
so the first check can fail.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from deploy.platform_checks import require_tool
from e2e.processes import (
    LOW_ARGON2,
    START_DEADLINE,
    Server,
    keyturn_env,
    run_keyturn,
    spawn_server,
    wait_healthy,
)
from helpers import PASSWORD, TEST_SECRET, bearer
from net import free_port

PG_URL = os.environ.get("KEYTURN_TEST_DATABASE_URL") or None

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.skipif(not PG_URL, reason="PgBouncer needs KEYTURN_TEST_DATABASE_URL"),
]

# Debian's pgbouncer; .ci/run installs it.
PGBOUNCER = "/usr/sbin/pgbouncer"
# Fewer server connections than clients, so every server connection is shared.
SERVER_CONNECTIONS = 2
CLIENTS = 20
ITERATIONS = 10
# Below the server's keep-alive timeout (uvicorn's 5 s, httpx's default expiry too): a
# connection idle that long may be closed by the server just as the client sends on it,
# and the request is lost without an answer (a CI run saw one refresh go so). A balancer
# closes idle upstream connections first for the same reason (deploy/nginx, 4 s).
CLIENT_KEEPALIVE_SECONDS = 2.0
BOUNCER_DEADLINE = 15.0
# The traffic's own limits are not under test: 20 clients share one address.
NO_LIMITS = {
    "KEYTURN_LIMIT_IP_PER_MINUTE": "100000",
    "KEYTURN_LIMIT_SIGNUPS_PER_IP_PER_HOUR": "1000",
}


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + BOUNCER_DEADLINE
    while True:
        if process.poll() is not None:
            raise AssertionError(f"pgbouncer exited with {process.returncode}\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"pgbouncer is not listening\n{log.read_text()}") from None
            time.sleep(0.05)


@pytest.fixture
def bouncer_url(empty_postgres_url: str, tmp_path: Path) -> Iterator[str]:
    """An empty database's URL through a private PgBouncer (transaction mode, 2 server
    conns); ``keyturn migrate`` fills it through PgBouncer."""
    database = make_url(empty_postgres_url)
    binary = require_tool(PGBOUNCER, "the PgBouncer test")
    port = free_port()
    user = database.username or "postgres"
    users = tmp_path / "pgbouncer-users.txt"
    # PgBouncer logs in to PostgreSQL with the password listed for the user here.
    users.write_text(f'"{user}" "{database.password or ""}"\n', encoding="utf-8")
    ini = tmp_path / "pgbouncer.ini"
    ini.write_text(
        "[databases]\n"
        f"{database.database} = host={database.host or '127.0.0.1'} "
        f"port={database.port or 5432} dbname={database.database}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\n"
        # No unix socket and no pidfile: it runs in the foreground, owned by this test.
        "unix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {users}\n"
        "pool_mode = transaction\n"
        f"default_pool_size = {SERVER_CONNECTIONS}\nmax_db_connections = {SERVER_CONNECTIONS}\n"
        "max_client_conn = 200\n",
        encoding="utf-8",
    )
    log = tmp_path / "pgbouncer.log"
    # PgBouncer refuses to run as root; -u drops to nobody once it has read its files
    # (it writes none: no pidfile, no log file, no unix socket).
    drop = ["-u", "nobody"] if os.geteuid() == 0 else []
    with log.open("wb") as out:
        process = subprocess.Popen([binary, *drop, str(ini)], stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_listening(port, process, log)
        yield database.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    finally:
        process.terminate()
        process.wait(timeout=10)


@dataclass
class Traffic:
    """What the clients saw: every unexpected answer as ``(path, status, body)``."""

    unexpected: list[tuple[str, int, str]] = field(default_factory=list)
    answers: int = 0

    def server_errors(self) -> list[tuple[str, int, str]]:
        """5xx answers and requests the server dropped without one (status 0)."""
        return [answer for answer in self.unexpected if answer[1] >= 500 or answer[1] == 0]


async def _client(http: httpx.AsyncClient, traffic: Traffic, stop: asyncio.Event) -> None:
    email = f"pgb-{uuid.uuid4().hex[:12]}@example.com"
    credentials = {"email": email, "password": PASSWORD}

    async def send(method: str, path: str, status: int, **kwargs: Any) -> httpx.Response | None:
        """The answer when it has ``status``; else records it (a dropped connection as
        status 0: a broken server may close one mid-request) and answers None."""
        try:
            answer = await http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            traffic.unexpected.append((path, 0, f"no answer: {type(exc).__name__}"))
            stop.set()
            return None
        traffic.answers += 1
        if answer.status_code == status:
            return answer
        traffic.unexpected.append((path, answer.status_code, answer.text[:300]))
        if answer.status_code >= 500:
            stop.set()
        return None

    if await send("POST", "/v1/auth/signup", 202, json=credentials) is None:
        return
    for _ in range(ITERATIONS):
        if stop.is_set():
            return
        login = await send("POST", "/v1/auth/login", 200, json=credentials)
        if login is None:
            continue
        body = {"refresh_token": login.json()["refresh_token"]}
        refreshed = await send("POST", "/v1/auth/refresh", 200, json=body)
        if refreshed is not None:
            headers = bearer(refreshed.json()["access_token"])
            await send("GET", "/v1/me", 200, headers=headers)


async def _drive(base_url: str, *, stop_at_first_error: bool) -> Traffic:
    """``CLIENTS`` concurrent users, each signing up once, then ``ITERATIONS`` rounds of
    login, refresh and ``/v1/me``; with ``stop_at_first_error`` every client stops at the
    first 5xx anyone saw."""
    traffic = Traffic()
    stop = asyncio.Event()
    never = asyncio.Event()
    limits = httpx.Limits(max_connections=CLIENTS, keepalive_expiry=CLIENT_KEEPALIVE_SECONDS)
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0, limits=limits) as http:
        await asyncio.gather(
            *(
                _client(http, traffic, stop if stop_at_first_error else never)
                for _ in range(CLIENTS)
            )
        )
    return traffic


def _spawn(tmp_path: Path, url: str, name: str, extra: dict[str, str]) -> Server:
    env = keyturn_env(
        tmp_path / "data",
        {
            "KEYTURN_DATABASE_URL": url,
            "KEYTURN_SECRET_KEY": TEST_SECRET,
            **LOW_ARGON2,
            **NO_LIMITS,
            **extra,
        },
    )
    return spawn_server(tmp_path, env, name=name)


def _healthy_or_exited(server: Server) -> bool:
    """True once ``/healthz`` answers 200, False if serve exits first (bounded)."""
    deadline = time.monotonic() + START_DEADLINE
    with httpx.Client(timeout=2.0) as http:
        while server.process.poll() is None:
            try:
                if http.get(f"{server.base_url}/healthz").status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"serve neither healthy nor exited\n{server.output()}")
            time.sleep(0.05)
    return False


def test_transaction_pooling_works_without_the_statement_cache_and_fails_with_it(
    bouncer_url: str, tmp_path: Path
) -> None:
    no_cache = {"KEYTURN_DATABASE_STATEMENT_CACHE": "false"}
    migrated = run_keyturn(
        ["migrate"],
        keyturn_env(tmp_path / "data", {"KEYTURN_DATABASE_URL": bouncer_url, **no_cache}),
    )
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert "applied" in migrated.stdout, migrated.stdout

    server = _spawn(tmp_path, bouncer_url, "no-cache", no_cache)
    try:
        wait_healthy(server)
        traffic = asyncio.run(_drive(server.base_url, stop_at_first_error=False))
    finally:
        server.stop()
    assert traffic.unexpected == [], server.output()
    assert traffic.answers == CLIENTS * (1 + 3 * ITERATIONS)
    assert "prepared statement" not in server.output()

    # The default (asyncpg's statement cache on) through the same pooler: errors.
    server = _spawn(tmp_path, bouncer_url, "default", {})
    try:
        if not _healthy_or_exited(server):
            # Which statement collides first is up to scheduling: sometimes already one
            # of the startup's own, and then serve exits before it is healthy.
            assert "prepared statement" in server.output(), server.output()
            return
        traffic = asyncio.run(_drive(server.base_url, stop_at_first_error=True))
    finally:
        server.stop()
    assert traffic.server_errors(), f"no 5xx with the statement cache on\n{server.output()}"
    assert "prepared statement" in server.output(), server.output()
