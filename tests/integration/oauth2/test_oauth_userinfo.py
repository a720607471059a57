"""``GET|POST /oauth2/userinfo`` (OpenID Connect Core 1.0 section 5.3): claims by scope
(section 5.4), RFC 6750 token transport and errors.

Every token comes from the real code flow (``oauth_helpers.grant``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
import time_machine
from fastapi import FastAPI

from helpers import bearer, signup_login
from keyturn.domain import utcnow
from oauth_helpers import Grant, basic, grant, register

pytestmark = pytest.mark.anyio
USERINFO = "/oauth2/userinfo"


@pytest.fixture
async def web(app: FastAPI, client: httpx.AsyncClient) -> dict[str, Any]:
    return await register(app, client)


async def grant_for(app: FastAPI, web: dict[str, Any], scope: str) -> Grant:
    return await grant(app, web, scope, name="Ada Lovelace")


async def test_claims_follow_the_scopes(
    app: FastAPI, client: httpx.AsyncClient, web: dict[str, Any]
) -> None:
    full = await grant_for(app, web, "openid profile email")
    token = full.access_token
    for answer in (
        await client.get(USERINFO, headers=bearer(token)),
        await client.post(USERINFO, headers=bearer(token)),
        await client.post(USERINFO, data={"access_token": token}),
    ):
        assert answer.status_code == 200, answer.text
        assert answer.headers["cache-control"] == "no-store"
        assert answer.json() == {
            "sub": str(full.user_id),
            "name": "Ada Lovelace",
            "email": full.email,
            "email_verified": False,
        }
    only_openid = await grant_for(app, web, "openid")
    answer = await client.get(USERINFO, headers=bearer(only_openid.access_token))
    assert answer.json() == {"sub": str(only_openid.user_id)}
    profile = await grant_for(app, web, "openid profile")
    answer = await client.get(USERINFO, headers=bearer(profile.access_token))
    assert answer.json() == {"sub": str(profile.user_id), "name": "Ada Lovelace"}


async def test_token_in_two_places_is_invalid_request(
    app: FastAPI, client: httpx.AsyncClient, web: dict[str, Any]
) -> None:
    token = (await grant_for(app, web, "openid")).access_token
    answer = await client.post(USERINFO, headers=bearer(token), data={"access_token": token})
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request"


async def test_no_or_invalid_token(client: httpx.AsyncClient) -> None:
    missing = await client.get(USERINFO)
    assert missing.status_code == 401
    # RFC 6750 section 3.1: no error code when no token was sent.
    assert missing.headers["www-authenticate"] == "Bearer"
    for headers in (bearer("garbage"), bearer("a.b.c")):
        answer = await client.get(USERINFO, headers=headers)
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
        assert answer.json()["error"] == "invalid_token"
        assert answer.headers["cache-control"] == "no-store"


async def test_tokens_without_openid_or_without_a_user_are_refused(
    app: FastAPI, client: httpx.AsyncClient, web: dict[str, Any]
) -> None:
    first_party = await signup_login(client)
    no_openid = await grant_for(app, web, "me:read")
    assert no_openid.scope == "me:read"
    for token in (first_party["access_token"], no_openid.access_token):
        answer = await client.get(USERINFO, headers=bearer(token))
        assert answer.status_code == 403
        assert answer.json()["error"] == "insufficient_scope"
        assert answer.headers["www-authenticate"].startswith('Bearer error="insufficient_scope"')
    # A client_credentials token names the client, not a user: no grant session behind it.
    machine = await register(
        app,
        client,
        redirect_uris=[],
        grant_types=["client_credentials"],
        response_types=[],
        scope="openid me:read",
    )
    issued = await client.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, auth=basic(machine)
    )
    assert issued.status_code == 200, issued.text
    answer = await client.get(USERINFO, headers=bearer(issued.json()["access_token"]))
    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_token"
    # Nor can such a token be given openid to slip past the scope check.
    with_openid = await client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "scope": "openid"},
        auth=basic(machine),
    )
    assert with_openid.status_code == 400
    assert with_openid.json()["error"] == "invalid_scope"


async def test_revoked_grant_is_refused(
    app: FastAPI, client: httpx.AsyncClient, web: dict[str, Any]
) -> None:
    token = (await grant_for(app, web, "openid")).access_token
    assert (await client.get(USERINFO, headers=bearer(token))).status_code == 200
    revoked = await client.post("/oauth2/revoke", data={"token": token}, auth=basic(web))
    assert revoked.status_code == 200
    answer = await client.get(USERINFO, headers=bearer(token))
    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_token"


async def test_expired_token_is_refused(
    app: FastAPI, client: httpx.AsyncClient, web: dict[str, Any]
) -> None:
    issued = await grant_for(app, web, "openid")
    lifetime = int(issued.body["expires_in"])
    with time_machine.travel(utcnow() + timedelta(seconds=lifetime + 1), tick=True):
        answer = await client.get(USERINFO, headers=bearer(issued.access_token))
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
