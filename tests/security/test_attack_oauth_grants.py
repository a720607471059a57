"""Attacks on live OAuth grants after the user or the client changed (issue 12, findings 3
and 23): a grant keeps only what the user and the client still hold, and a deleted client
leaves no grant behind.

ASVS v5.0.0 8.3.2 (changes to what authorization rests on apply at once: a lost role or
a cut client scope reaches refresh, introspection and userinfo), 7.4.1 (an ended grant is
refused everywhere at once), 10.7.3 (no grant outlives the consent the user can see and
revoke) and 10.4.1 / 10.4.4 (an unregistered redirect URI or grant type stops working).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from helpers import PASSWORD, admin_headers, bearer, create_role, grant_role
from keyturn.domain import utcnow
from oauth_helpers import (
    Grant,
    authorize_and_redeem,
    code_for,
    introspect,
    pkce_pair,
    register,
    signed_in,
    token,
)
from oauth_helpers import grant as code_flow_grant

pytestmark = pytest.mark.anyio

ADMIN_SCOPE = "offline_access openid me:read users:read users:write"


async def _support_role(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    return await create_role(client, headers, ["users:read", "users:write"], prefix="support")


async def _grant_with_role(
    app: FastAPI, oauth_client: dict[str, Any], scope: str, role: str, headers: dict[str, str]
) -> Grant:
    """The code flow for a fresh user who holds ``role`` when approving ``scope``."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as browser:
        email = await signed_in(browser)
        async with app.state.services.auth._uow_factory() as uow:
            user = await uow.users.get_by_email(email)
        assert user is not None
        await grant_role(browser, headers, user.id, role)
        answer = await authorize_and_redeem(browser, oauth_client, scope=scope)
    assert answer.status_code == 200, answer.text
    now = utcnow()
    async with app.state.services.auth._uow_factory() as uow:
        sessions = await uow.sessions.list_active(
            user.id, now, idle_since=now - timedelta(days=1), limit=10, after=None
        )
    (session,) = [s for s in sessions if s.client_id == oauth_client["client_id"]]
    return Grant(oauth_client["client_id"], email, user.id, session.id, answer.json())


async def _refresh(
    client: httpx.AsyncClient, oauth_client: dict[str, Any], value: str, **form: str
) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": value, **form}
    return await token(client, oauth_client, **form)


# -- Finding 3: refresh and introspection keep only what is still held ----------------------


async def test_asvs_8_3_2_refresh_drops_permissions_the_user_lost(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    headers = await admin_headers(app, client)
    web = await register(app, client, scope=ADMIN_SCOPE)
    role = await _support_role(client, headers)
    grant = await _grant_with_role(app, web, ADMIN_SCOPE, role, headers)
    assert grant.scope == "me:read offline_access openid users:read users:write"
    resource_server = await register(app, client, client_name="API")
    # The role goes away: the next refresh carries none of its permissions.
    gone = await client.delete(f"/v1/admin/users/{grant.user_id}/roles/{role}", headers=headers)
    assert gone.status_code == 204, gone.text
    # The access token minted before introspects with what is left (RFC 7662 2.2 scope).
    old = await introspect(client, resource_server, grant.access_token)
    assert old["active"] is True
    assert old["scope"] == "me:read offline_access openid"
    refreshed_state = await introspect(client, web, grant.refresh_token)
    assert refreshed_state["scope"] == "me:read offline_access openid"
    answer = await _refresh(client, web, grant.refresh_token)
    assert answer.status_code == 200, answer.text
    assert answer.json()["scope"] == "me:read offline_access openid"
    fresh = await introspect(client, resource_server, answer.json()["access_token"])
    assert fresh["scope"] == "me:read offline_access openid"
    # Asking for the lost permission explicitly gets nothing more (RFC 6749 section 6).
    narrowed = await _refresh(
        client, web, answer.json()["refresh_token"], scope="openid users:write"
    )
    assert narrowed.status_code == 200, narrowed.text
    assert narrowed.json()["scope"] == "openid"


async def test_asvs_8_3_2_refresh_drops_scopes_the_client_lost(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    headers = await admin_headers(app, client)
    web = await register(app, client, scope=ADMIN_SCOPE)
    role = await _support_role(client, headers)
    grant = await _grant_with_role(app, web, ADMIN_SCOPE, role, headers)
    cut = await client.patch(
        f"/v1/admin/clients/{web['client_id']}",
        json={"scope": "openid offline_access users:read"},
        headers=headers,
    )
    assert cut.status_code == 200, cut.text
    assert (await introspect(client, web, grant.access_token))["scope"] == (
        "offline_access openid users:read"
    )
    answer = await _refresh(client, web, grant.refresh_token)
    assert answer.status_code == 200, answer.text
    assert answer.json()["scope"] == "offline_access openid users:read"


async def test_asvs_8_3_2_a_grant_left_with_nothing_is_refused(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    headers = await admin_headers(app, client)
    web = await register(app, client, scope=ADMIN_SCOPE)
    role = await _support_role(client, headers)
    grant = await _grant_with_role(app, web, "offline_access users:read", role, headers)
    assert grant.scope == "offline_access users:read"
    gone = await client.delete(f"/v1/admin/users/{grant.user_id}/roles/{role}", headers=headers)
    assert gone.status_code == 204
    # Nothing of what was granted is held any more: the grant is dead (RFC 6749 5.2).
    assert await introspect(client, web, grant.access_token) == {"active": False}
    assert await introspect(client, web, grant.refresh_token) == {"active": False}
    answer = await _refresh(client, web, grant.refresh_token)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_grant"
    assert set(answer.json()) == {"error", "error_description"}


async def test_asvs_8_3_2_a_client_that_lost_offline_access_refreshes_nothing(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    headers = await admin_headers(app, client)
    web = await register(app, client)
    grant = await code_flow_grant(app, web, "openid offline_access me:read")
    cut = await client.patch(
        f"/v1/admin/clients/{web['client_id']}", json={"scope": "openid me:read"}, headers=headers
    )
    assert cut.status_code == 200, cut.text
    # OIDC Core section 11: a refresh token lives on offline_access, which is gone.
    assert await introspect(client, web, grant.refresh_token) == {"active": False}
    answer = await _refresh(client, web, grant.refresh_token)
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_grant")
    # The access token keeps what the client may still hold.
    assert (await introspect(client, web, grant.access_token))["scope"] == "me:read openid"


async def test_asvs_8_3_2_userinfo_releases_only_scopes_the_client_still_holds(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    headers = await admin_headers(app, client)
    web = await register(app, client)
    grant = await code_flow_grant(app, web, "openid email offline_access")
    before = await client.get("/oauth2/userinfo", headers=bearer(grant.access_token))
    assert before.json()["email"] == grant.email
    cut = await client.patch(
        f"/v1/admin/clients/{web['client_id']}",
        json={"scope": "openid offline_access"},
        headers=headers,
    )
    assert cut.status_code == 200, cut.text
    after = await client.get("/oauth2/userinfo", headers=bearer(grant.access_token))
    assert after.status_code == 200, after.text
    assert "email" not in after.json()


# -- Finding 23: deleting a client ends its grants ------------------------------------------


async def test_asvs_7_4_1_deleting_a_client_ends_its_grants_everywhere(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    headers = await admin_headers(app, client)
    web = await register(app, client)
    resource_server = await register(app, client, client_name="API")
    grant = await code_flow_grant(app, web, "openid email offline_access")
    login = await client.post("/v1/auth/login", json={"email": grant.email, "password": PASSWORD})
    user = bearer(login.json()["access_token"])
    consents = await client.get("/v1/me/consents", headers=user)
    assert len(consents.json()["items"]) == 1
    assert (await introspect(client, resource_server, grant.access_token))["active"] is True

    deleted = await client.delete(f"/v1/admin/clients/{web['client_id']}", headers=headers)
    assert deleted.status_code == 204, deleted.text

    userinfo = await client.get("/oauth2/userinfo", headers=bearer(grant.access_token))
    assert userinfo.status_code == 401, userinfo.text
    assert grant.email not in userinfo.text
    assert await introspect(client, resource_server, grant.access_token) == {"active": False}
    # The grant session is over (database) and deny-listed (every replica).
    async with app.state.services.auth._uow_factory() as uow:
        session = await uow.sessions.get(grant.session_id)
    assert session is not None
    assert session.revoked_at is not None
    assert await app.state.services.access_tokens.is_revoked(grant.session_id)
    sessions = await client.get("/v1/me/sessions", headers=user)
    assert str(grant.session_id) not in sessions.text
    assert (await client.get("/v1/me/consents", headers=user)).json()["items"] == []
    events = await client.get(
        "/v1/admin/audit-events", params={"type": "client.deleted"}, headers=headers
    )
    (event,) = [e for e in events.json()["items"] if e["data"]["client_id"] == web["client_id"]]
    assert event["data"]["sessions"] == 1


async def test_asvs_10_4_4_client_update_neighbours(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Dropping the refresh_token grant or a redirect URI takes effect on live grants."""
    headers = await admin_headers(app, client)
    second = "https://app.example.com/other"
    web = await register(app, client, redirect_uris=["https://app.example.com/cb", second])
    grant = await code_flow_grant(app, web, "openid offline_access")
    path = f"/v1/admin/clients/{web['client_id']}"
    no_refresh = await client.patch(
        path, json={"grant_types": ["authorization_code"]}, headers=headers
    )
    assert no_refresh.status_code == 200, no_refresh.text
    assert await introspect(client, web, grant.refresh_token) == {"active": False}
    answer = await _refresh(client, web, grant.refresh_token)
    assert (answer.status_code, answer.json()["error"]) == (400, "unauthorized_client")

    # A code issued for a redirect URI that is then unregistered is not redeemed.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as browser:
        await signed_in(browser)
        verifier, challenge = pkce_pair()
        code, _ = await code_for(
            browser,
            web,
            redirect_uri=second,
            code_challenge=challenge,
            code_challenge_method="S256",
        )
    dropped = await client.patch(
        path, json={"redirect_uris": ["https://app.example.com/cb"]}, headers=headers
    )
    assert dropped.status_code == 200, dropped.text
    redeemed = await token(
        client,
        web,
        grant_type="authorization_code",
        code=code,
        redirect_uri=second,
        code_verifier=verifier,
    )
    assert (redeemed.status_code, redeemed.json()["error"]) == (400, "invalid_grant")


async def test_asvs_8_3_2_a_code_redeemed_after_the_role_went_carries_none_of_it(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    headers = await admin_headers(app, client)
    web = await register(app, client, scope=ADMIN_SCOPE)
    role = await _support_role(client, headers)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as browser:
        email = await signed_in(browser)
        async with app.state.services.auth._uow_factory() as uow:
            user = await uow.users.get_by_email(email)
        assert user is not None
        path = f"/v1/admin/users/{user.id}/roles/{role}"
        assert (await browser.put(path, headers=headers)).status_code == 204
        verifier, challenge = pkce_pair()
        code, _ = await code_for(
            browser,
            web,
            scope="openid users:read",
            code_challenge=challenge,
            code_challenge_method="S256",
        )
    # Between approval and redemption the role goes away.
    assert (await client.delete(path, headers=headers)).status_code == 204
    answer = await token(
        client,
        web,
        grant_type="authorization_code",
        code=code,
        redirect_uri=web["redirect_uris"][0],
        code_verifier=verifier,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["scope"] == "openid"
