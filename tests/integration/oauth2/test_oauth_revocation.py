"""``POST /oauth2/revoke`` (RFC 7009): a client ends its own grants, nothing else, and the
answer is 200 either way (section 2.2).

Every grant comes from the real code flow (``oauth_helpers.grant``)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from helpers import admin_headers, bearer, signup_login
from oauth_helpers import Grant, basic, register, token
from oauth_helpers import grant as code_flow_grant

pytestmark = pytest.mark.anyio
REVOKE = "/oauth2/revoke"
INTROSPECT = "/oauth2/introspect"


@pytest.fixture
async def admin(app: FastAPI, client: httpx.AsyncClient) -> dict[str, str]:
    return await admin_headers(app, client)


@pytest.fixture
async def web(app: FastAPI, client: httpx.AsyncClient) -> dict[str, Any]:
    return await register(app, client)


async def grant_for(app: FastAPI, oauth_client: dict[str, Any]) -> Grant:
    return await code_flow_grant(app, oauth_client, "openid offline_access")


async def revoke(
    client: httpx.AsyncClient, caller: dict[str, Any], token: str, **extra: str
) -> httpx.Response:
    if caller.get("client_secret"):
        answer = await client.post(REVOKE, data={"token": token, **extra}, auth=basic(caller))
    else:
        data = {"token": token, "client_id": caller["client_id"], **extra}
        answer = await client.post(REVOKE, data=data)
    assert answer.status_code == 200, answer.text
    assert answer.content == b""
    assert answer.headers["cache-control"] == "no-store"
    return answer


async def active(client: httpx.AsyncClient, caller: dict[str, Any], token: str) -> bool:
    answer = await client.post(INTROSPECT, data={"token": token}, auth=basic(caller))
    assert answer.status_code == 200, answer.text
    return bool(answer.json()["active"])


async def test_revoking_a_refresh_token_ends_the_grant(
    app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str], web: dict[str, Any]
) -> None:
    grant = await grant_for(app, web)
    assert await active(client, web, grant.refresh_token)
    await revoke(client, web, grant.refresh_token, token_type_hint="refresh_token")
    assert not await active(client, web, grant.refresh_token)
    # The grant's access tokens die with it (sid deny-listed on every replica).
    assert not await active(client, web, grant.access_token)
    refreshed = await token(
        client, web, grant_type="refresh_token", refresh_token=grant.refresh_token
    )
    assert refreshed.status_code == 400
    assert refreshed.json()["error"] == "invalid_grant"
    audit = await client.get(
        "/v1/admin/audit-events", params={"type": "oauth.token_revoked"}, headers=admin
    )
    events = [e for e in audit.json()["items"] if e["type"] == "oauth.token_revoked"]
    assert events
    assert events[0]["data"] == {"client_id": web["client_id"], "token_type": "refresh_token"}
    assert events[0]["session_id"] == str(grant.session_id)
    # Revoking again is no error (section 2.2).
    await revoke(client, web, grant.refresh_token)


async def test_revoking_an_access_token_ends_the_grant_too(
    app: FastAPI, client: httpx.AsyncClient, web: dict[str, Any]
) -> None:
    grant = await grant_for(app, web)
    await revoke(client, web, grant.access_token, token_type_hint="access_token")
    assert not await active(client, web, grant.access_token)
    assert not await active(client, web, grant.refresh_token)


async def test_public_client_revokes_with_its_client_id(
    app: FastAPI, client: httpx.AsyncClient, web: dict[str, Any]
) -> None:
    public = await register(
        app,
        client,
        token_endpoint_auth_method="none",
        redirect_uris=["com.example.app:/callback"],
    )
    assert not public.get("client_secret")
    grant = await grant_for(app, public)
    assert await active(client, web, grant.access_token)
    await revoke(client, public, grant.refresh_token, token_type_hint="nonsense")
    assert not await active(client, web, grant.access_token)


async def test_foreign_first_party_and_invalid_tokens_are_left_alone(
    app: FastAPI, client: httpx.AsyncClient, web: dict[str, Any]
) -> None:
    other = await register(app, client, client_name="Other")
    grant = await grant_for(app, web)
    for value in (grant.refresh_token, grant.access_token):
        await revoke(client, other, value)
    assert await active(client, web, grant.refresh_token)
    assert await active(client, web, grant.access_token)
    login = await signup_login(client)
    for value in (login["refresh_token"], login["access_token"]):
        await revoke(client, web, value)
    me = await client.get("/v1/me", headers=bearer(login["access_token"]))
    assert me.status_code == 200
    refreshed = await client.post(
        "/v1/auth/refresh", json={"refresh_token": login["refresh_token"]}
    )
    assert refreshed.status_code == 200
    for value in ("garbage", "A" * 43, "a.b.c"):
        await revoke(client, web, value)


async def test_client_authentication(client: httpx.AsyncClient, web: dict[str, Any]) -> None:
    for attempt in (
        {"data": {"token": "x"}},
        {"data": {"token": "x"}, "auth": httpx.BasicAuth(web["client_id"], "wrong")},
        # A confidential client may not fall back to naming itself (section 2.1).
        {"data": {"token": "x", "client_id": web["client_id"]}},
    ):
        answer = await client.post(REVOKE, **attempt)
        assert answer.status_code == 401
        assert answer.json()["error"] == "invalid_client"
        assert answer.headers["www-authenticate"].startswith("Basic")
    missing = await client.post(REVOKE, data={}, auth=basic(web))
    assert missing.status_code == 400
    assert missing.json()["error"] == "invalid_request"
