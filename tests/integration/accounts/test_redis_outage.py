"""Limits shared across instances, and fail-closed behaviour when Redis goes away.

DESIGN.md section 6 / ASVS v5.0.0-16.5.3: Redis loss degrades (database fallback for
revocation, per-process rate limits), it never opens a door. These tests run their own
``redis-server`` and stop it; the shared Redis is never touched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import pytest

from helpers import PASSWORD, bearer, lifespan, signup_login
from keyturn.app import create_app
from keyturn.config import Settings
from redis_server import RedisServer

pytestmark = pytest.mark.anyio

WRONG = "not the right password"


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@asynccontextmanager
async def instances(settings: Settings, count: int) -> AsyncIterator[list[httpx.AsyncClient]]:
    """``count`` app instances (replicas) with the same settings, one client each."""
    async with AsyncExitStack() as stack:
        clients = []
        for _ in range(count):
            application = create_app(settings)
            await stack.enter_async_context(lifespan(application))
            transport = httpx.ASGITransport(app=application, client=("203.0.113.5", 5000))
            clients.append(
                await stack.enter_async_context(
                    httpx.AsyncClient(transport=transport, base_url="http://testserver")
                )
            )
        yield clients


async def test_two_instances_share_one_limit(
    make_settings: Callable[..., Settings], private_redis: RedisServer
) -> None:
    settings = make_settings(redis_url=private_redis.url)
    async with instances(settings, 2) as (first, second):
        email = (await signup_login(first))["email"]
        attempt = {"email": email, "password": WRONG}
        for index in range(10):
            replica = first if index % 2 else second
            assert (await replica.post("/v1/auth/login", json=attempt)).status_code == 401
        # The 11th failure is refused on either replica: the count is shared.
        assert (await first.post("/v1/auth/login", json=attempt)).status_code == 429
        assert (await second.post("/v1/auth/login", json=attempt)).status_code == 429


async def test_redis_outage_fails_closed(
    make_settings: Callable[..., Settings], private_redis: RedisServer
) -> None:
    settings = make_settings(redis_url=private_redis.url)
    async with instances(settings, 1) as (client,):
        revoked = await signup_login(client)
        assert (
            await client.post("/v1/auth/logout", headers=bearer(revoked["access_token"]))
        ).status_code == 204
        live = await signup_login(client)

        private_redis.stop()

        # A revoked session stays revoked (the database answers), a live one still works.
        gone = await client.get("/v1/me", headers=bearer(revoked["access_token"]))
        assert gone.status_code == 401
        assert gone.json()["code"] == "session_revoked"
        assert (await client.get("/v1/me", headers=bearer(live["access_token"]))).status_code == 200
        assert (await client.get("/readyz")).status_code == 503

        # Credential endpoints are never unlimited: per-process limits take over.
        attempt = {"email": live["email"], "password": WRONG}
        codes = [(await client.post("/v1/auth/login", json=attempt)).status_code for _ in range(11)]
        assert codes == [401] * 10 + [429]

        # Logout while Redis is down still ends the session everywhere that asks the DB.
        assert (
            await client.post("/v1/auth/logout", headers=bearer(live["access_token"]))
        ).status_code == 204
        assert (await client.get("/v1/me", headers=bearer(live["access_token"]))).status_code == 401

        private_redis.start()  # back, but empty: every deny-list entry is gone
        assert (await client.get("/readyz")).status_code == 200
        for token in (revoked["access_token"], live["access_token"]):
            after = await client.get("/v1/me", headers=bearer(token))
            assert after.status_code == 401
            assert after.json()["code"] == "session_revoked"
        again = await client.post(
            "/v1/auth/login", json={"email": revoked["email"], "password": PASSWORD}
        )
        assert again.status_code == 200
