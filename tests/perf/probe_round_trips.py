"""Counts PostgreSQL round trips per request, in process (no timing is asserted anywhere).

    KEYTURN_PROBE_DATABASE=postgresql://postgres@127.0.0.1:5432 \\
    KEYTURN_PROBE_REDIS=redis://127.0.0.1:6379/0 \\
        .venv/bin/python tests/perf/probe_round_trips.py [--requests 200]

With ``KEYTURN_PROBE_REDIS`` the app uses Redis (rate limits, deny-list) and the Redis
commands per request are counted too (a pipeline counts as one round trip).
Scenarios: ``GET /v1/me``, ``POST /v1/auth/login``, ``POST /oauth2/token``
(client_credentials, HTTP Basic) and ``POST /v1/auth/refresh`` (a fresh token each).

Creates a throw-away database, runs the app in process behind httpx, and counts what
asyncpg sends: simple queries (BEGIN, ROLLBACK, COMMIT), the pre-ping's empty query,
statement preparations and prepared-statement executions. For ``POST /v1/auth/login`` it
also reports the statements sent while the audit chain lock is held and how long that
lock is held (wall clock, so only indicative on a busy machine).
Not collected by pytest (no ``test_`` prefix): a tool for docs/technical.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import tempfile
import time
import uuid
from collections import Counter
from typing import Any

import asyncpg
import httpx
from asgi_lifespan import LifespanManager
from asyncpg.prepared_stmt import PreparedStatement
from redis.asyncio.client import Pipeline, Redis

from keyturn.app import create_app
from keyturn.config import load_settings
from keyturn.db.migrate import upgrade

COUNTS: Counter[str] = Counter()
LOCK: dict[str, Any] = {"held_since": None, "statements": 0, "holds": [], "in_lock": []}


def _patch() -> None:
    execute = asyncpg.Connection.execute
    fetchrow = asyncpg.Connection.fetchrow
    prepare = asyncpg.Connection.prepare
    fetch = PreparedStatement.fetch

    async def counted_execute(self: Any, query: str, *args: Any, **kw: Any) -> Any:
        word = query.strip().rstrip(";").split()[0].upper()
        COUNTS[word] += 1
        if LOCK["held_since"] is not None:
            LOCK["statements"] += 1
        result = await execute(self, query, *args, **kw)
        if word in ("COMMIT", "ROLLBACK") and LOCK["held_since"] is not None:
            LOCK["holds"].append(time.perf_counter() - LOCK["held_since"])
            LOCK["in_lock"].append(LOCK["statements"])
            LOCK["held_since"] = None
        return result

    async def counted_fetchrow(self: Any, query: str, *args: Any, **kw: Any) -> Any:
        COUNTS["ping" if query.strip() == ";" else "fetchrow"] += 1
        return await fetchrow(self, query, *args, **kw)

    async def counted_prepare(self: Any, query: str, *args: Any, **kw: Any) -> Any:
        COUNTS["prepare"] += 1
        return await prepare(self, query, *args, **kw)

    async def counted_fetch(self: PreparedStatement, *args: Any, **kw: Any) -> Any:
        COUNTS["execute prepared"] += 1
        query = self.get_query()
        if LOCK["held_since"] is not None:
            LOCK["statements"] += 1
        result = await fetch(self, *args, **kw)
        if "pg_advisory_xact_lock" in query:
            LOCK["held_since"] = time.perf_counter()
            LOCK["statements"] = 0
        return result

    execute_command = Redis.execute_command
    pipeline_execute = Pipeline.execute

    async def counted_command(self: Any, *args: Any, **kw: Any) -> Any:
        COUNTS[f"redis {args[0]}"] += 1
        return await execute_command(self, *args, **kw)

    async def counted_pipeline(self: Any, *args: Any, **kw: Any) -> Any:
        COUNTS["redis pipeline"] += 1
        return await pipeline_execute(self, *args, **kw)

    Redis.execute_command = counted_command  # type: ignore[method-assign]
    Pipeline.execute = counted_pipeline  # type: ignore[method-assign]
    asyncpg.Connection.execute = counted_execute  # type: ignore[method-assign]
    asyncpg.Connection.fetchrow = counted_fetchrow  # type: ignore[method-assign]
    asyncpg.Connection.prepare = counted_prepare  # type: ignore[method-assign]
    PreparedStatement.fetch = counted_fetch  # type: ignore[method-assign]


def _report(label: str, requests: int) -> None:
    sql = {key: value for key, value in COUNTS.items() if not key.startswith("redis")}
    redis = {key: value for key, value in COUNTS.items() if key.startswith("redis")}
    for kind, counts in (("PostgreSQL", sql), ("Redis", redis)):
        total = sum(counts.values())
        parts = ", ".join(f"{key} {value / requests:.2f}" for key, value in sorted(counts.items()))
        print(f"{label}: {total / requests:.2f} {kind} round trips per request ({parts})")
    COUNTS.clear()


async def _measure(label: str, requests: int, send: Any) -> None:
    """Round trips, CPU and Python calls per request of ``send()`` (a coroutine factory)."""
    COUNTS.clear()
    cpu = time.process_time()
    for _ in range(requests):
        await send()
    cpu_per = (time.process_time() - cpu) / requests
    _report(label, requests)
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(100):
        await send()
    profile.disable()
    COUNTS.clear()
    if os.environ.get("KEYTURN_PROBE_PSTATS"):
        # e.g. KEYTURN_PROBE_PSTATS=/tmp/probe: one pstats file per scenario to read later.
        slug = "".join(char if char.isalnum() else "_" for char in label)
        profile.dump_stats(os.path.join(os.environ["KEYTURN_PROBE_PSTATS"], f"{slug}.pstats"))
    calls = pstats.Stats(profile).total_calls / 100  # type: ignore[attr-defined]
    print(f"{label}: {calls:.0f} Python function calls per request (in process)")
    print(f"{label}: in-process CPU per request (with the httpx client) {cpu_per * 1e3:.2f} ms")


async def _oauth_client(app: Any, http: httpx.AsyncClient) -> httpx.BasicAuth:
    email = f"probe-admin-{uuid.uuid4().hex[:8]}@example.com"
    await app.state.services.users.create_admin(email, "probe-password-1")
    login = await http.post("/v1/auth/login", json={"email": email, "password": "probe-password-1"})
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    metadata = {
        "client_name": "probe",
        "grant_types": ["client_credentials"],
        "response_types": [],
        "redirect_uris": [],
        "token_endpoint_auth_method": "client_secret_basic",
    }
    answer = await http.post("/v1/admin/clients", json=metadata, headers=headers)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    return httpx.BasicAuth(body["client_id"], body["client_secret"])


async def main(server: str, requests: int, redis_url: str | None) -> None:
    name = f"keyturn_probe_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(f"{server}/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{server.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"
    try:
        await upgrade(url)
        settings = load_settings(
            env="dev",
            data_dir=tempfile.mkdtemp(prefix=name),
            database_url=url,
            secret_key=["probe-secret-key-0123456789abcdef0123456789abcdef"],
            argon2_memory_kib=1024,
            argon2_time_cost=1,
            outbox_worker="off",
            log_level="warning",
            key_rotation_check_seconds=86400,
            key_cache_seconds=3000,
            audit_seal_seconds=3600,
            limit_ip_per_minute=1_000_000,
            limit_signups_per_ip_per_hour=1_000_000,
            limit_failures_per_account_ip=1_000_000,
            redis_url=redis_url,
            redis_prefix=f"{name}:",
        )
        application = create_app(settings)
        async with LifespanManager(application):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://probe") as http:
                email, password = f"probe-{uuid.uuid4().hex[:8]}@example.com", "probe-password-1"
                await http.post("/v1/auth/signup", json={"email": email, "password": password})
                login = await http.post(
                    "/v1/auth/login", json={"email": email, "password": password}
                )
                token = login.json()["access_token"]
                headers = {"Authorization": f"Bearer {token}"}
                for _ in range(20):  # warm the statement caches
                    assert (await http.get("/v1/me", headers=headers)).status_code == 200
                _patch()

                async def get_me() -> None:
                    assert (await http.get("/v1/me", headers=headers)).status_code == 200

                await _measure("GET /v1/me", requests, get_me)
                COUNTS.clear()
                logins = max(requests // 4, 10)
                LOCK["holds"].clear()
                LOCK["in_lock"].clear()
                for _ in range(logins):
                    answer = await http.post(
                        "/v1/auth/login", json={"email": email, "password": password}
                    )
                    assert answer.status_code == 200, answer.text
                _report("POST /v1/auth/login", logins)
                holds = sorted(LOCK["holds"])
                print(
                    f"audit chain lock per login: {statistics.median(LOCK['in_lock']):.0f} "
                    f"round trips after taking it (COMMIT included); held median "
                    f"{statistics.median(holds) * 1000:.2f} ms, p90 "
                    f"{holds[int(len(holds) * 0.9)] * 1000:.2f} ms (wall clock, in process)"
                )
                auth = await _oauth_client(application, http)

                async def client_credentials() -> None:
                    answer = await http.post(
                        "/oauth2/token", data={"grant_type": "client_credentials"}, auth=auth
                    )
                    assert answer.status_code == 200, answer.text

                for _ in range(20):
                    await client_credentials()
                await _measure(
                    "POST /oauth2/token client_credentials", requests, client_credentials
                )
                # A chain of rotations: each request presents the token the last one got.
                chain = [login.json()["refresh_token"]]

                async def refresh() -> None:
                    answer = await http.post("/v1/auth/refresh", json={"refresh_token": chain[-1]})
                    assert answer.status_code == 200, answer.text
                    chain.append(answer.json()["refresh_token"])

                for _ in range(20):
                    await refresh()
                await _measure("POST /v1/auth/refresh", requests, refresh)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    arguments = parser.parse_args()
    server = os.environ.get("KEYTURN_PROBE_DATABASE", "postgresql://postgres@127.0.0.1:5432")
    asyncio.run(main(server, arguments.requests, os.environ.get("KEYTURN_PROBE_REDIS")))
