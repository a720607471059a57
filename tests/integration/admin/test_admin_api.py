"""The admin API: permission matrix, user administration, roles, audit (issue 5)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI

from helpers import PASSWORD, admin_login, bearer, mails_to, new_email, signup_login
from keyturn.domain import PERMISSIONS, SELF_SERVICE_SCOPES
from smtp_server import SmtpServer, extract_token

pytestmark = pytest.mark.anyio

# (method, path, body, the permission the route needs)
ADMIN_ROUTES: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("GET", "/v1/admin/users", None, "users:read"),
    ("POST", "/v1/admin/users", {"email": "x-{n}@example.com"}, "users:write"),
    ("GET", "/v1/admin/users/{user}", None, "users:read"),
    ("PATCH", "/v1/admin/users/{user}", {"name": "Renamed"}, "users:write"),
    ("POST", "/v1/admin/users/{user}/lock", None, "users:write"),
    ("POST", "/v1/admin/users/{user}/unlock", None, "users:write"),
    ("POST", "/v1/admin/users/{user}/reset-password", None, "users:write"),
    ("GET", "/v1/admin/users/{user}/sessions", None, "users:read"),
    ("DELETE", "/v1/admin/users/{user}/sessions", None, "users:write"),
    ("DELETE", "/v1/admin/users/{user}/mfa", None, "users:write"),
    ("GET", "/v1/admin/roles", None, "roles:write"),
    ("POST", "/v1/admin/roles", {"name": "r-{n}", "permissions": ["users:read"]}, "roles:write"),
    ("GET", "/v1/admin/roles/admin", None, "roles:write"),
    ("PATCH", "/v1/admin/roles/{role}", {"description": "changed"}, "roles:write"),
    ("DELETE", "/v1/admin/roles/{role}", None, "roles:write"),
    ("PUT", "/v1/admin/users/{user}/roles/admin", None, "roles:write"),
    ("DELETE", "/v1/admin/users/{user}/roles/admin", None, "roles:write"),
    ("GET", "/v1/admin/audit-events", None, "audit:read"),
    ("GET", "/v1/admin/keys", None, "keys:write"),
    ("POST", "/v1/admin/keys/rotate?force=true", None, "keys:write"),
    ("POST", "/v1/admin/keys/{kid}/revoke", None, "keys:write"),
    ("DELETE", "/v1/admin/users/{user}", None, "users:write"),
    ("GET", "/v1/admin/clients", None, "clients:write"),
    (
        "POST",
        "/v1/admin/clients",
        {"client_name": "c-{n}", "redirect_uris": ["https://app.example.com/cb"]},
        "clients:write",
    ),
    ("GET", "/v1/admin/clients/{client}", None, "clients:write"),
    ("PATCH", "/v1/admin/clients/{client}", {"client_name": "Renamed"}, "clients:write"),
    ("POST", "/v1/admin/clients/{client}/secret", None, "clients:write"),
    ("DELETE", "/v1/admin/clients/{client}", None, "clients:write"),
]
ALL_SCOPES = [*SELF_SERVICE_SCOPES, *PERMISSIONS]


def fill(
    path: str,
    body: dict[str, Any] | None,
    user: str,
    client: str = "",
    role: str = "",
    kid: str = "",
) -> tuple[str, dict[str, Any] | None]:
    n = uuid.uuid4().hex[:8]
    filled = None
    if body is not None:
        filled = {k: v.format(n=n) if isinstance(v, str) else v for k, v in body.items()}
    return path.format(user=user, client=client, role=role, kid=kid), filled


async def new_key(client: httpx.AsyncClient, token: str, scopes: list[str]) -> str:
    answer = await client.post(
        "/v1/me/api-keys", json={"name": "matrix", "scopes": scopes}, headers=bearer(token)
    )
    assert answer.status_code == 201, answer.text
    key: str = answer.json()["key"]
    return key


async def test_every_admin_route_checks_the_permission(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Every admin route, every kind of caller.

    Anonymous -> 401; a plain user, a key holding every scope but the one the route
    needs (from an admin) -> 403; the admin and the admin's key holding every scope -> 2xx.
    """
    plain = await signup_login(client)
    admin = await admin_login(app, client)
    admin_headers = bearer(admin["access_token"])
    full_key = await new_key(client, admin["access_token"], ALL_SCOPES)
    keys_without = {
        permission: await new_key(
            client, admin["access_token"], [s for s in ALL_SCOPES if s != permission]
        )
        for permission in PERMISSIONS
    }

    async def victim() -> str:
        created = await client.post(
            "/v1/admin/users", json={"email": new_email()}, headers=admin_headers
        )
        assert created.status_code == 201, created.text
        user_id: str = created.json()["id"]
        return user_id

    async def victim_client() -> str:
        created = await client.post(
            "/v1/admin/clients",
            json={"client_name": "victim", "redirect_uris": ["https://app.example.com/cb"]},
            headers=admin_headers,
        )
        assert created.status_code == 201, created.text
        client_id: str = created.json()["client_id"]
        return client_id

    async def victim_role() -> str:
        name = "v-" + uuid.uuid4().hex[:10]
        created = await client.post(
            "/v1/admin/roles",
            json={"name": name, "permissions": ["users:read"]},
            headers=admin_headers,
        )
        assert created.status_code == 201, created.text
        return name

    async def victim_kid() -> str:
        # A waiting RS256 `next` key: revoking it publishes a fresh one, nothing else moves.
        keys = await client.get("/v1/admin/keys", headers=admin_headers)
        assert keys.status_code == 200, keys.text
        (kid,) = [
            key["kid"]
            for key in keys.json()["items"]
            if key["alg"] == "RS256" and key["state"] == "next"
        ]
        return str(kid)

    async def targets(template: str) -> tuple[str, str, str, str]:
        # A fresh user, client, role and key for each call: the first call may delete them.
        user = await victim()
        oauth_client = await victim_client() if "{client}" in template else ""
        role = await victim_role() if "{role}" in template else ""
        kid = await victim_kid() if "{kid}" in template else ""
        return user, oauth_client, role, kid

    for method, template, body, needs in ADMIN_ROUTES:
        path, payload = fill(template, body, *await targets(template))
        denied = {
            "anonymous": (None, 401, "invalid_token"),
            "plain user": (plain["access_token"], 403, "permission_denied"),
            f"key without {needs}": (keys_without[needs], 403, "permission_denied"),
        }
        for caller, (token, status, code) in denied.items():
            headers = bearer(token) if token else {}
            answer = await client.request(method, path, json=payload, headers=headers)
            assert (answer.status_code, answer.json()["code"]) == (status, code), (
                method,
                path,
                caller,
                answer.text,
            )
        for caller, token in {"admin": admin["access_token"], "full key": full_key}.items():
            path, payload = fill(template, body, *await targets(template))
            answer = await client.request(method, path, json=payload, headers=bearer(token))
            assert answer.status_code < 300, (method, path, caller, answer.text)


async def test_admin_routes_are_all_in_the_matrix(app: FastAPI) -> None:
    documented = {
        (method.upper(), path)
        for path, item in app.openapi()["paths"].items()
        if path.startswith("/v1/admin")
        for method in item
    }
    tested = {
        (
            method,
            path.split("?")[0]
            .replace("{user}", "{user_id}")
            .replace("{client}", "{client_id}")
            .replace("{role}", "{name}")
            .replace("/roles/admin", "/roles/{name}"),
        )
        for method, path, _, _ in ADMIN_ROUTES
    }
    assert documented <= tested, documented - tested


async def test_search_and_paginate_users(app: FastAPI, client: httpx.AsyncClient) -> None:
    admin = await admin_login(app, client)
    tag = uuid.uuid4().hex[:10]
    emails = sorted(f"{tag}-{index}@example.com" for index in range(5))
    for email in emails:
        await client.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"q": tag, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = await client.get(
            "/v1/admin/users", params=params, headers=bearer(admin["access_token"])
        )
        assert page.status_code == 200
        seen += [item["email"] for item in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == emails
    # LIKE wildcards match themselves: "<tag>%" would match all five as a wildcard.
    for literal in (f"{tag}%", f"{tag}_"):
        wildcard = await client.get(
            "/v1/admin/users", params={"q": literal}, headers=bearer(admin["access_token"])
        )
        assert wildcard.json()["items"] == []
    tampered = await client.get(
        "/v1/admin/users", params={"cursor": "not-a-cursor!"}, headers=bearer(admin["access_token"])
    )
    assert tampered.status_code == 422


async def test_created_user_sets_a_password_from_the_mail(
    app: FastAPI, client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    admin = await admin_login(app, client)
    email = new_email()
    created = await client.post(
        "/v1/admin/users",
        json={"email": email, "name": "Newcomer"},
        headers=bearer(admin["access_token"]),
    )
    assert created.status_code == 201
    (mail,) = await mails_to(smtp, email)
    done = await client.post(
        "/v1/auth/password/reset",
        json={"token": extract_token(mail), "password": "my own passphrase 1"},
    )
    assert done.status_code == 204
    login = await client.post(
        "/v1/auth/login", json={"email": email, "password": "my own passphrase 1"}
    )
    assert login.status_code == 200
    again = await client.post(
        "/v1/admin/users", json={"email": email}, headers=bearer(admin["access_token"])
    )
    assert again.status_code == 409


async def test_disable_lock_and_reset_end_sessions(app: FastAPI, client: httpx.AsyncClient) -> None:
    admin = await admin_login(app, client)
    headers = bearer(admin["access_token"])
    for action in ("disable", "lock", "reset"):
        victim = await signup_login(client)
        target = f"/v1/admin/users/{victim['user']['id']}"
        if action == "disable":
            answer = await client.patch(target, json={"disabled": True}, headers=headers)
            assert answer.json()["disabled"] is True
        elif action == "lock":
            answer = await client.post(f"{target}/lock", headers=headers)
        else:
            answer = await client.post(f"{target}/reset-password", headers=headers)
        assert answer.status_code < 300
        me = await client.get("/v1/me", headers=bearer(victim["access_token"]))
        assert me.status_code == 401, action
        login = await client.post(
            "/v1/auth/login", json={"email": victim["email"], "password": PASSWORD}
        )
        assert login.status_code == 401, action
    unlocked = await client.post(f"{target}/unlock", headers=headers)
    assert unlocked.status_code == 204


async def test_roles_cannot_escalate(app: FastAPI, client: httpx.AsyncClient) -> None:
    admin = await admin_login(app, client)
    admin_headers = bearer(admin["access_token"])
    manager = await signup_login(client)
    name = f"roles-{uuid.uuid4().hex[:6]}"
    created = await client.post(
        "/v1/admin/roles",
        json={"name": name, "permissions": ["roles:write", "users:read"]},
        headers=admin_headers,
    )
    assert created.status_code == 201
    assign = await client.put(
        f"/v1/admin/users/{manager['user']['id']}/roles/{name}", headers=admin_headers
    )
    assert assign.status_code == 204
    headers = bearer(manager["access_token"])
    # The manager holds roles:write and users:read, nothing else.
    escalate = await client.post(
        "/v1/admin/roles",
        json={"name": f"{name}-x", "permissions": ["keys:write"]},
        headers=headers,
    )
    assert escalate.status_code == 403
    assert escalate.json()["code"] == "permission_escalation"
    grab_admin = await client.put(
        f"/v1/admin/users/{manager['user']['id']}/roles/admin", headers=headers
    )
    assert grab_admin.status_code == 403
    unknown = await client.post(
        "/v1/admin/roles", json={"name": f"{name}-y", "permissions": ["root"]}, headers=headers
    )
    assert unknown.status_code == 422
    assert unknown.json()["code"] == "unknown_permission"
    builtin = await client.delete("/v1/admin/roles/admin", headers=admin_headers)
    assert builtin.status_code == 409
    assert builtin.json()["code"] == "builtin_role"
    missing = await client.put(
        f"/v1/admin/users/{manager['user']['id']}/roles/nope", headers=admin_headers
    )
    assert missing.status_code == 404
    assert missing.json()["code"] == "unknown_role"
    # Removing the role takes effect at once, without a new token.
    await client.delete(
        f"/v1/admin/users/{manager['user']['id']}/roles/{name}", headers=admin_headers
    )
    assert (await client.get("/v1/admin/roles", headers=headers)).status_code == 403


async def test_admin_actions_are_audited(app: FastAPI, client: httpx.AsyncClient) -> None:
    admin = await admin_login(app, client)
    headers = bearer(admin["access_token"])
    victim = await signup_login(client)
    await client.post(f"/v1/admin/users/{victim['user']['id']}/lock", headers=headers)
    events = await client.get(
        "/v1/admin/audit-events",
        params={"type": "admin.user_locked", "user_id": admin["user"]["id"]},
        headers=headers,
    )
    assert events.status_code == 200
    (event,) = events.json()["items"]
    assert event["data"] == {"target_user_id": victim["user"]["id"]}
    bad = await client.get("/v1/admin/audit-events", params={"cursor": "x1"}, headers=headers)
    assert bad.status_code == 422


async def test_rotation_through_the_admin_api(app: FastAPI, client: httpx.AsyncClient) -> None:
    admin = await admin_login(app, client)
    headers = bearer(admin["access_token"])
    before = (await client.get("/v1/admin/keys", headers=headers)).json()["items"]
    assert {key["state"] for key in before} >= {"active", "next"}
    early = await client.post("/v1/admin/keys/rotate", headers=headers)
    # The next key was published moments ago: verifiers may not have it yet.
    assert early.status_code == 409
    assert early.json()["code"] == "rotation_refused"
    forced = await client.post("/v1/admin/keys/rotate", params={"force": "true"}, headers=headers)
    assert forced.status_code == 200
    activated = forced.json()["activated"]
    fresh = await client.post(
        "/v1/auth/login", json={"email": admin["email"], "password": PASSWORD}
    )
    assert jwt.get_unverified_header(fresh.json()["access_token"])["kid"] == activated
    # The token from before the rotation still works.
    assert (await client.get("/v1/me", headers=headers)).status_code == 200
    # Every chain rotated together; the list shows each key's alg.
    chains = {chain["alg"]: chain for chain in forced.json()["chains"]}
    assert list(chains) == ["ES256", "RS256"]  # the access-token algorithm first
    assert chains["ES256"]["activated"] == activated
    after = (await client.get("/v1/admin/keys", headers=headers)).json()["items"]
    for alg, chain in chains.items():
        mine = [key for key in after if key["alg"] == alg]
        assert [key["kid"] for key in mine if key["state"] == "active"] == [chain["activated"]]
        assert [key["kid"] for key in mine if key["state"] == "next"] == [chain["next"]]
        assert set(chain["retired"]) <= {key["kid"] for key in mine if key["state"] == "retired"}
    assert {key["alg"] for key in after} == {"ES256", "RS256"}
