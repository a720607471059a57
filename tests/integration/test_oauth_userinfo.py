"""``GET|POST /oauth2/userinfo`` (OpenID Connect Core 1.0 section 5.3): claims by scope
(section 5.4), RFC 6750 token transport and errors."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from helpers import bearer, signup_login
from oauth_grants import (
    admin_headers,
    basic,
    issue_grant,
    mint_access_token,
    new_user,
    register_client,
)

pytestmark = pytest.mark.anyio
USERINFO = "/oauth2/userinfo"


@pytest.fixture
async def web(app: FastAPI, client: httpx.AsyncClient) -> dict[str, Any]:
    return await register_client(client, await admin_headers(app, client))


async def token_for(
    app: FastAPI, client: httpx.AsyncClient, web: dict[str, Any], scope: str
) -> str:
    user = await new_user(client, app.state.services, name="Ada Lovelace")
    grant = await issue_grant(
        app.state.services, client_id=web["client_id"], user=user, scope=scope
    )
    return grant.access_token


async def test_claims_follow_the_scopes(
    app: FastAPI, client: httpx.AsyncClient, web: dict[str, Any]
) -> None:
    token = await token_for(app, client, web, "openid profile email")
    for answer in (
        await client.get(USERINFO, headers=bearer(token)),
        await client.post(USERINFO, headers=bearer(token)),
        await client.post(USERINFO, data={"access_token": token}),
    ):
        assert answer.status_code == 200, answer.text
        assert answer.headers["cache-control"] == "no-store"
        body = answer.json()
        assert set(body) == {"sub", "name", "email", "email_verified"}
        assert body["name"] == "Ada Lovelace"
        assert body["email_verified"] is False
        uuid.UUID(body["sub"])
    only_openid = await token_for(app, client, web, "openid")
    answer = await client.get(USERINFO, headers=bearer(only_openid))
    assert set(answer.json()) == {"sub"}
    profile = await token_for(app, client, web, "openid profile")
    assert set((await client.get(USERINFO, headers=bearer(profile))).json()) == {"sub", "name"}


async def test_token_in_two_places_is_invalid_request(
    app: FastAPI, client: httpx.AsyncClient, web: dict[str, Any]
) -> None:
    token = await token_for(app, client, web, "openid")
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
    no_openid = await token_for(app, client, web, "me:read")
    for token in (first_party["access_token"], no_openid):
        answer = await client.get(USERINFO, headers=bearer(token))
        assert answer.status_code == 403
        assert answer.json()["error"] == "insufficient_scope"
        assert answer.headers["www-authenticate"].startswith('Bearer error="insufficient_scope"')
    # A client_credentials token names the client, not a user: no grant session behind it.
    machine = mint_access_token(
        app.state.services,
        client_id=web["client_id"],
        subject=web["client_id"],
        sid=uuid.uuid4(),
        scope="openid",
    )
    answer = await client.get(USERINFO, headers=bearer(machine))
    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_token"


async def test_revoked_grant_is_refused(
    app: FastAPI, client: httpx.AsyncClient, web: dict[str, Any]
) -> None:
    token = await token_for(app, client, web, "openid")
    revoked = await client.post(
        "/oauth2/revoke",
        data={"token": token},
        headers=basic(web["client_id"], web["client_secret"]),
    )
    assert revoked.status_code == 200
    answer = await client.get(USERINFO, headers=bearer(token))
    assert answer.status_code == 401
