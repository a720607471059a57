"""``POST /oauth2/revoke`` (RFC 7009): a client ends its own grants, nothing else, and the
answer is 200 either way (section 2.2)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from helpers import bearer, signup_login
from oauth_grants import Grant, admin_headers, basic, issue_grant, new_user, register_client

pytestmark = pytest.mark.anyio
REVOKE = "/oauth2/revoke"
INTROSPECT = "/oauth2/introspect"


@pytest.fixture
async def admin(app: FastAPI, client: httpx.AsyncClient) -> dict[str, str]:
    return await admin_headers(app, client)


@pytest.fixture
async def web(client: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, Any]:
    return await register_client(client, admin)


async def grant_for(app: FastAPI, client: httpx.AsyncClient, client_id: str) -> Grant:
    user = await new_user(client, app.state.services, name=None)
    return await issue_grant(
        app.state.services, client_id=client_id, user=user, scope="openid offline_access"
    )


async def revoke(
    client: httpx.AsyncClient, caller: dict[str, Any], token: str, **extra: str
) -> httpx.Response:
    if "client_secret" in caller:
        headers = basic(caller["client_id"], caller["client_secret"])
        data = {"token": token, **extra}
    else:
        headers, data = {}, {"token": token, "client_id": caller["client_id"], **extra}
    answer = await client.post(REVOKE, data=data, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.content == b""
    assert answer.headers["cache-control"] == "no-store"
    return answer


async def active(client: httpx.AsyncClient, caller: dict[str, Any], token: str) -> bool:
    answer = await client.post(
        INTROSPECT,
        data={"token": token},
        headers=basic(caller["client_id"], caller["client_secret"]),
    )
    return bool(answer.json()["active"])


async def test_revoking_a_refresh_token_ends_the_grant(
    app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str], web: dict[str, Any]
) -> None:
    grant = await grant_for(app, client, web["client_id"])
    await revoke(client, web, grant.refresh_token, token_type_hint="refresh_token")
    assert not await active(client, web, grant.refresh_token)
    # The grant's access tokens die with it (sid deny-listed on every replica).
    assert not await active(client, web, grant.access_token)
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
    grant = await grant_for(app, client, web["client_id"])
    await revoke(client, web, grant.access_token, token_type_hint="access_token")
    assert not await active(client, web, grant.access_token)
    assert not await active(client, web, grant.refresh_token)


async def test_public_client_revokes_with_its_client_id(
    app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str], web: dict[str, Any]
) -> None:
    public = await register_client(
        client,
        admin,
        token_endpoint_auth_method="none",
        redirect_uris=["com.example.app:/callback"],
    )
    grant = await grant_for(app, client, public["client_id"])
    await revoke(client, public, grant.refresh_token, token_type_hint="nonsense")
    assert not await active(client, web, grant.access_token)


async def test_foreign_first_party_and_invalid_tokens_are_left_alone(
    app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str], web: dict[str, Any]
) -> None:
    other = await register_client(client, admin, client_name="Other")
    grant = await grant_for(app, client, web["client_id"])
    for token in (grant.refresh_token, grant.access_token):
        await revoke(client, other, token)
    assert await active(client, web, grant.refresh_token)
    assert await active(client, web, grant.access_token)
    login = await signup_login(client)
    for token in (login["refresh_token"], login["access_token"]):
        await revoke(client, web, token)
    me = await client.get("/v1/me", headers=bearer(login["access_token"]))
    assert me.status_code == 200
    refreshed = await client.post(
        "/v1/auth/refresh", json={"refresh_token": login["refresh_token"]}
    )
    assert refreshed.status_code == 200
    for token in ("garbage", "A" * 43, "a.b.c"):
        await revoke(client, web, token)


async def test_client_authentication(client: httpx.AsyncClient, web: dict[str, Any]) -> None:
    for attempt in (
        {"data": {"token": "x"}},
        {"data": {"token": "x"}, "headers": basic(web["client_id"], "wrong")},
        # A confidential client may not fall back to naming itself (section 2.1).
        {"data": {"token": "x", "client_id": web["client_id"]}},
    ):
        answer = await client.post(REVOKE, **attempt)
        assert answer.status_code == 401
        assert answer.json()["error"] == "invalid_client"
        assert answer.headers["www-authenticate"].startswith("Basic")
    missing = await client.post(
        REVOKE, data={}, headers=basic(web["client_id"], web["client_secret"])
    )
    assert missing.status_code == 400
    assert missing.json()["error"] == "invalid_request"
