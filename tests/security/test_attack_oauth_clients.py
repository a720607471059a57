"""Attacks through OAuth client registrations and client_credentials tokens (issue 12,
findings 7 and 14).

ASVS v5.0.0 8.2.1 and 10.4.11 (no escalation: a client is assigned no permission beyond
the administrator who registers or changes it), 10.3.2 (introspection answers a
client_credentials token with the claims a resource server decides on, and no user
``sub``), 7.4.1 (access tokens of a deleted client, or issued before a "revoke old
tokens" secret rotation, are refused at once on every replica) and 8.3.2 (a cut client
registration reaches tokens already issued).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from helpers import PASSWORD, admin_headers, bearer, create_role, grant_role, new_email, running_app
from keyturn.config import Settings
from oauth_helpers import basic, introspect, register
from oauth_helpers import grant as code_flow_grant

pytestmark = pytest.mark.anyio

MACHINE: dict[str, Any] = {
    "client_name": "Machine",
    "grant_types": ["client_credentials"],
    "response_types": [],
    "redirect_uris": [],
    "scope": "users:read",
    "token_endpoint_auth_method": "client_secret_basic",
}


async def _clients_writer(app: FastAPI, client: httpx.AsyncClient) -> dict[str, str]:
    """A user whose only permission is clients:write, signed in."""
    admin = await admin_headers(app, client)
    role = await create_role(client, admin, ["clients:write"], prefix="integrator")
    email = new_email()
    await client.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
    async with app.state.services.auth._uow_factory() as uow:
        user = await uow.users.get_by_email(email)
    assert user is not None
    await grant_role(client, admin, user.id, role)
    login = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    return bearer(login.json()["access_token"])


async def _cc_token(client: httpx.AsyncClient, machine: dict[str, Any]) -> httpx.Response:
    return await client.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, auth=basic(machine)
    )


# -- Finding 7: clients:write alone grants nothing beyond what its holder has ---------------


async def test_asvs_8_2_1_a_client_cannot_hold_permissions_its_creator_lacks(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    writer = await _clients_writer(app, client)
    for scope in ("users:write", "openid users:read", "clients:write keys:write"):
        refused = await client.post(
            "/v1/admin/clients", json={**MACHINE, "scope": scope}, headers=writer
        )
        assert (refused.status_code, refused.json()["code"]) == (403, "permission_escalation")
        assert refused.json()["errors"][0]["field"] == "scope"
    # What the creator holds, and the self-service and OIDC scopes, are fine.
    own = await client.post(
        "/v1/admin/clients", json={**MACHINE, "scope": "clients:write me:read"}, headers=writer
    )
    assert own.status_code == 201, own.text
    web = await client.post(
        "/v1/admin/clients",
        json={
            "client_name": "Web",
            "redirect_uris": ["https://app.example.com/cb"],
            "scope": "openid profile email offline_access me:read sessions:write",
        },
        headers=writer,
    )
    assert web.status_code == 201, web.text
    # Widening by update is refused the same way.
    path = f"/v1/admin/clients/{own.json()['client_id']}"
    widened = await client.patch(path, json={"scope": "users:read"}, headers=writer)
    assert (widened.status_code, widened.json()["code"]) == (403, "permission_escalation")


async def test_asvs_8_2_1_a_client_beyond_the_caller_cannot_be_taken_over(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Rotating the secret of (or re-pointing) an admin-scoped client would hand its
    permissions to a mere clients:write holder."""
    admin = await admin_headers(app, client)
    created = await client.post(
        "/v1/admin/clients", json={**MACHINE, "scope": "users:write"}, headers=admin
    )
    assert created.status_code == 201, created.text
    path = f"/v1/admin/clients/{created.json()['client_id']}"
    writer = await _clients_writer(app, client)
    attempts = [
        await client.post(f"{path}/secret", headers=writer),
        await client.patch(path, json={"client_name": "Mine"}, headers=writer),
        await client.delete(path, headers=writer),
    ]
    for answer in attempts:
        assert (answer.status_code, answer.json()["code"]) == (403, "permission_escalation")
    # Reading it is fine, and it still works for the admin.
    assert (await client.get(path, headers=writer)).status_code == 200
    assert (await client.post(f"{path}/secret", headers=admin)).status_code == 200


# -- Finding 14: client_credentials tokens introspect and die -------------------------------


async def test_asvs_10_3_2_client_credentials_tokens_introspect_correctly(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    machine = await register(app, client, **MACHINE)
    resource_server = await register(app, client, client_name="API")
    issued = await _cc_token(client, machine)
    assert issued.status_code == 200, issued.text
    access = issued.json()["access_token"]
    for caller in (machine, resource_server):
        body = await introspect(client, caller, access)
        assert body["active"] is True, body
        assert body["client_id"] == machine["client_id"]
        assert body["scope"] == "users:read"
        assert body["token_type"] == "access_token"
        assert {"exp", "iat"} <= body.keys()
        # No user: neither a sub nor a sid a resource server could take for one.
        assert "sub" not in body
        assert "sid" not in body
    # Never a first-party credential, never a user at userinfo.
    assert (await client.get("/v1/me", headers=bearer(access))).status_code == 401
    assert (await client.get("/oauth2/userinfo", headers=bearer(access))).status_code == 401
    # RFC 7009 section 2.2: revocation answers 200 (nothing to end per token).
    revoked = await client.post("/oauth2/revoke", data={"token": access}, auth=basic(machine))
    assert revoked.status_code == 200, revoked.text


async def test_asvs_7_4_1_secret_rotation_with_revoke_kills_old_tokens(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await admin_headers(app, client)
    machine = await register(app, client, **MACHINE)
    resource_server = await register(app, client, client_name="API")
    path = f"/v1/admin/clients/{machine['client_id']}/secret"
    kept = (await _cc_token(client, machine)).json()["access_token"]
    # A plain rotation keeps the tokens already issued.
    plain = await client.post(path, headers=admin)
    assert plain.status_code == 200, plain.text
    machine["client_secret"] = plain.json()["client_secret"]
    assert (await introspect(client, resource_server, kept))["active"] is True
    old = (await _cc_token(client, machine)).json()["access_token"]
    revoking = await client.post(path, params={"revoke_tokens": "true"}, headers=admin)
    assert revoking.status_code == 200, revoking.text
    machine["client_secret"] = revoking.json()["client_secret"]
    assert await introspect(client, resource_server, old) == {"active": False}
    assert await introspect(client, resource_server, kept) == {"active": False}
    # A token minted with the new secret right away is alive.
    new = await _cc_token(client, machine)
    assert new.status_code == 200, new.text
    assert (await introspect(client, resource_server, new.json()["access_token"]))["active"]
    events = await client.get(
        "/v1/admin/audit-events", params={"type": "client.secret_rotated"}, headers=admin
    )
    mine = [e for e in events.json()["items"] if e["data"]["client_id"] == machine["client_id"]]
    assert sorted(e["data"]["revoke_tokens"] for e in mine) == [False, True]


async def test_asvs_7_4_1_deleting_a_client_kills_its_client_credentials_tokens(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await admin_headers(app, client)
    machine = await register(app, client, **MACHINE)
    resource_server = await register(app, client, client_name="API")
    access = (await _cc_token(client, machine)).json()["access_token"]
    assert (await introspect(client, resource_server, access))["active"] is True
    deleted = await client.delete(f"/v1/admin/clients/{machine['client_id']}", headers=admin)
    assert deleted.status_code == 204
    assert await introspect(client, resource_server, access) == {"active": False}


async def test_asvs_8_3_2_client_credentials_tokens_follow_the_client_registration(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Cutting the scope or the client_credentials grant reaches tokens already issued."""
    admin = await admin_headers(app, client)
    machine = await register(app, client, **{**MACHINE, "scope": "users:read audit:read"})
    resource_server = await register(app, client, client_name="API")
    access = (await _cc_token(client, machine)).json()["access_token"]
    path = f"/v1/admin/clients/{machine['client_id']}"
    cut = await client.patch(path, json={"scope": "audit:read"}, headers=admin)
    assert cut.status_code == 200, cut.text
    assert (await introspect(client, resource_server, access))["scope"] == "audit:read"
    no_grant = await client.patch(
        path,
        json={
            "grant_types": ["authorization_code"],
            "redirect_uris": ["https://app.example.com/cb"],
        },
        headers=admin,
    )
    assert no_grant.status_code == 200, no_grant.text
    assert await introspect(client, resource_server, access) == {"active": False}


async def test_asvs_7_4_1_revoke_tokens_reaches_user_grants_and_every_replica(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    """A second app on the same database (another replica, with its own in-process
    stores when there is no Redis) refuses the old tokens at once; the grant refreshes
    with the new secret."""
    admin = await admin_headers(app, client)
    web = await register(app, client)
    resource_server = await register(app, client, client_name="API")
    grant = await code_flow_grant(app, web, "openid offline_access")
    rotated = await client.post(
        f"/v1/admin/clients/{web['client_id']}/secret",
        params={"revoke_tokens": "true"},
        headers=admin,
    )
    assert rotated.status_code == 200, rotated.text
    async with running_app(settings) as replica:
        assert await introspect(replica, resource_server, grant.access_token) == {"active": False}
        userinfo = await replica.get("/oauth2/userinfo", headers=bearer(grant.access_token))
        assert userinfo.status_code == 401, userinfo.text
    web["client_secret"] = rotated.json()["client_secret"]
    refreshed = await client.post(
        "/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": grant.refresh_token},
        auth=basic(web),
    )
    assert refreshed.status_code == 200, refreshed.text
    fresh = refreshed.json()["access_token"]
    assert (await introspect(client, resource_server, fresh))["active"] is True
    assert (await client.get("/oauth2/userinfo", headers=bearer(fresh))).status_code == 200


async def test_asvs_7_4_1_a_deleted_clients_tokens_die_on_every_replica(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    admin = await admin_headers(app, client)
    web = await register(app, client)
    machine = await register(app, client, **MACHINE)
    resource_server = await register(app, client, client_name="API")
    grant = await code_flow_grant(app, web, "openid offline_access")
    machine_token = (await _cc_token(client, machine)).json()["access_token"]
    async with running_app(settings) as replica:
        for value in (grant.access_token, machine_token):
            assert (await introspect(replica, resource_server, value))["active"] is True
        for gone in (web, machine):
            deleted = await client.delete(f"/v1/admin/clients/{gone['client_id']}", headers=admin)
            assert deleted.status_code == 204
        for value in (grant.access_token, machine_token):
            assert await introspect(replica, resource_server, value) == {"active": False}
        userinfo = await replica.get("/oauth2/userinfo", headers=bearer(grant.access_token))
        assert userinfo.status_code == 401, userinfo.text
