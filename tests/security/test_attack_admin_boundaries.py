"""Issue 12 finding 6: admin boundaries.

ASVS v5.0.0-8.2.2 (data-specific access: an account is acted on only by someone holding
at least what it holds) and v5.0.0-8.3.1 (the rule is enforced server-side, on REST and
GraphQL alike, and holds under concurrency).

The attacks: a help-desk user holding ``users:write`` locks, disables, resets, deletes or
ends the sessions of a full administrator; a ``roles:write`` holder re-roles one; and the
last administrator is removed (by deletion, self-deletion, role removal, disabling,
locking, or two administrators removing each other at the same moment).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from conftest import SettingsFactory
from helpers import (
    PASSWORD,
    admin_headers,
    admin_login,
    bearer,
    create_role,
    grant_role,
    lifespan,
    signup_login,
)
from keyturn.app import create_app

pytestmark = pytest.mark.anyio


async def _login(client: httpx.AsyncClient, email: str) -> dict[str, Any]:
    answer = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def _with_role(
    client: httpx.AsyncClient, admin: dict[str, str], permissions: list[str]
) -> dict[str, Any]:
    """A fresh user holding a fresh role with ``permissions``."""
    name = await create_role(client, admin, permissions, prefix="r")
    user = await signup_login(client)
    await grant_role(client, admin, user["user"]["id"], name)
    user["role"] = name
    return user


def _attacks(target: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    base = f"/v1/admin/users/{target}"
    return [
        ("POST", f"{base}/lock", None),
        ("POST", f"{base}/unlock", None),
        ("POST", f"{base}/reset-password", None),
        ("PATCH", base, {"disabled": True}),
        ("PATCH", base, {"name": "Pwned"}),
        ("DELETE", f"{base}/sessions", None),
        ("DELETE", base, None),
    ]


async def test_asvs_8_2_2_users_write_cannot_touch_a_full_admin(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    victim = await admin_login(app, client)
    admin = await admin_headers(app, client)
    helpdesk = await _with_role(client, admin, ["users:read", "users:write"])
    # The admin's own API key scoped down to users:write acts with users:write only.
    key = await client.post(
        "/v1/me/api-keys",
        json={"name": "scoped", "scopes": ["users:read", "users:write"]},
        headers=admin,
    )
    assert key.status_code == 201, key.text
    target = victim["user"]["id"]
    for caller in (helpdesk["access_token"], key.json()["key"]):
        for method, path, body in _attacks(target):
            answer = await client.request(method, path, json=body, headers=bearer(caller))
            assert answer.status_code == 403, (method, path, answer.text)
            assert answer.json()["code"] == "target_outranks_caller", answer.text
    # Nothing happened to the administrator: the token works, the password works.
    me = await client.get("/v1/me", headers=bearer(victim["access_token"]))
    assert me.status_code == 200
    assert me.json()["name"] != "Pwned"
    await _login(client, victim["user"]["email"])
    # A peer holding the same permissions (or fewer) is fair game, the helpdesk may act.
    plain = await signup_login(client)
    peer = await _with_role(client, admin, ["users:write"])
    for who in (plain, peer):
        locked = await client.post(
            f"/v1/admin/users/{who['user']['id']}/lock", headers=bearer(helpdesk["access_token"])
        )
        assert locked.status_code == 204, locked.text
    # GraphQL: the same service, the same refusal.
    answer = await client.post(
        "/graphql",
        json={
            "query": "mutation($id: UUID!) { lockUser(userId: $id) }",
            "variables": {"id": target},
        },
        headers=bearer(helpdesk["access_token"]),
    )
    assert answer.status_code == 200
    assert {e["extensions"]["code"] for e in answer.json()["errors"]} == {"target_outranks_caller"}
    assert (await client.get("/v1/me", headers=bearer(victim["access_token"]))).status_code == 200


async def test_asvs_8_2_2_roles_write_cannot_re_role_someone_stronger(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await admin_headers(app, client)
    victim = await admin_login(app, client)
    manager = await _with_role(client, admin, ["roles:write", "users:read"])
    # The manager holds every permission of its own role, so may_grant alone would pass.
    target = victim["user"]["id"]
    headers = bearer(manager["access_token"])
    give = await client.put(f"/v1/admin/users/{target}/roles/{manager['role']}", headers=headers)
    assert give.status_code == 403
    assert give.json()["code"] == "target_outranks_caller"
    assert (
        await client.put(f"/v1/admin/users/{target}/roles/{manager['role']}", headers=admin)
    ).status_code == 204
    take = await client.delete(f"/v1/admin/users/{target}/roles/{manager['role']}", headers=headers)
    assert take.status_code == 403
    assert take.json()["code"] == "target_outranks_caller"
    answer = await client.post(
        "/graphql",
        json={
            "query": "mutation($id: UUID!, $r: String!) { removeRole(userId: $id, role: $r) }",
            "variables": {"id": target, "r": manager["role"]},
        },
        headers=headers,
    )
    assert {e["extensions"]["code"] for e in answer.json()["errors"]} == {"target_outranks_caller"}
    roles = await client.get(f"/v1/admin/users/{target}", headers=admin)
    assert set(roles.json()["roles"]) == {"admin", manager["role"]}


@pytest.fixture
async def alone(make_settings: SettingsFactory, private_database_url: str) -> Any:
    """An app on a database of its own with exactly one administrator."""
    settings = make_settings(database_url=private_database_url)
    application = create_app(settings)
    async with lifespan(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield application, http


async def test_asvs_8_3_1_the_last_admin_cannot_be_removed(alone: Any) -> None:
    app, client = alone
    only = await admin_login(app, client)
    me = only["user"]["id"]
    headers = bearer(only["access_token"])
    attempts = [
        ("DELETE", f"/v1/admin/users/{me}", None),
        ("POST", f"/v1/admin/users/{me}/lock", None),
        ("PATCH", f"/v1/admin/users/{me}", {"disabled": True}),
        ("DELETE", f"/v1/admin/users/{me}/roles/admin", None),
        ("DELETE", "/v1/me", {"password": PASSWORD}),
    ]
    for method, path, body in attempts:
        answer = await client.request(method, path, json=body, headers=headers)
        assert answer.status_code == 409, (method, path, answer.text)
        assert answer.json()["code"] == "last_admin"
    removed = await client.post(
        "/graphql",
        json={
            "query": 'mutation($id: UUID!) { removeRole(userId: $id, role: "admin") }',
            "variables": {"id": me},
        },
        headers=headers,
    )
    assert {e["extensions"]["code"] for e in removed.json()["errors"]} == {"last_admin"}
    assert (await client.get("/v1/me", headers=headers)).json()["roles"] == ["admin"]

    # A second administrator who is locked or disabled does not count as one.
    second = await admin_login(app, client)
    other = second["user"]["id"]
    assert (await client.post(f"/v1/admin/users/{other}/lock", headers=headers)).status_code == 204
    for method, path, body in attempts[:3]:
        answer = await client.request(method, path, json=body, headers=headers)
        assert answer.status_code == 409, (method, path, answer.text)
        assert answer.json()["code"] == "last_admin"
    unlocked = await client.post(f"/v1/admin/users/{other}/unlock", headers=headers)
    assert unlocked.status_code == 204
    # With two active administrators, one may go (here: by dropping its own role).
    dropped = await client.delete(f"/v1/admin/users/{me}/roles/admin", headers=headers)
    assert dropped.status_code == 204, dropped.text


async def test_asvs_8_3_1_two_admins_removing_each_other_leave_one(alone: Any) -> None:
    app, client = alone
    survivor = await admin_login(app, client)
    for _ in range(4):  # a race may resolve either way; every round must leave exactly one
        a, b = survivor, await admin_login(app, client)
        answers = await asyncio.gather(
            client.delete(f"/v1/admin/users/{b['user']['id']}", headers=bearer(a["access_token"])),
            client.delete(f"/v1/admin/users/{a['user']['id']}", headers=bearer(b["access_token"])),
        )
        texts = [answer.text for answer in answers]
        statuses = sorted(answer.status_code for answer in answers)
        # One deletion wins; the other is refused: as the last admin (409), or because its
        # caller is gone already (401 ended session, 403 no roles left).
        assert statuses[0] == 204, texts
        assert statuses[1] in (401, 403, 409), texts
        survivors = [
            who
            for who in (a, b)
            if (await client.get("/v1/me", headers=bearer(who["access_token"]))).status_code == 200
        ]
        assert len(survivors) == 1, texts
        survivor = survivors[0]
    last = await client.delete(
        f"/v1/admin/users/{survivor['user']['id']}", headers=bearer(survivor["access_token"])
    )
    assert last.status_code == 409
