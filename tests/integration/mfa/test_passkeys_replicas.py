"""A ceremony begun on one replica finishes on another (issue 15): two apps on the same
PostgreSQL and Redis, the options from one, the response to the other, and a challenge
used on one is refused by the other."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest

from helpers import bearer, running_app, signup_login
from keyturn.config import Settings
from passkey_helpers import ISSUER, authenticator, creation_options

pytestmark = [pytest.mark.anyio, pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def settings(make_settings: Any, backend: str) -> Settings:
    if backend != "postgres":
        pytest.skip("replicas share PostgreSQL and Redis (KEYTURN_TEST_* unset)")
    settings: Settings = make_settings(issuer=ISSUER)
    assert settings.redis_url, "the postgres backend runs with KEYTURN_TEST_REDIS_URL"
    return settings


@pytest.fixture
async def replicas(
    settings: Settings,
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(running_app(settings))
        second = await stack.enter_async_context(running_app(settings))
        yield first, second


async def test_registration_and_sign_in_cross_replicas(
    replicas: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    a, b = replicas
    user = await signup_login(a)
    device = authenticator()
    options = await creation_options(a, user["access_token"])
    registered = await b.post(
        "/v1/me/passkeys",
        json={"credential": device.register(options)},
        headers=bearer(user["access_token"]),
    )
    assert registered.status_code == 201, registered.text

    request = (await b.post("/v1/auth/passkey/options", json={})).json()
    answer = device.authenticate(request)
    signed_in = await a.post("/v1/auth/passkey", json={"credential": answer})
    assert signed_in.status_code == 200, signed_in.text
    # The challenge was taken on A: B refuses the same answer.
    replayed = await b.post("/v1/auth/passkey", json={"credential": answer})
    assert (replayed.status_code, replayed.json()["code"]) == (401, "invalid_credentials")
