"""Personal API keys: shown once, stored as a digest, exactly their scopes (issue 5 item 3)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import time_machine
from fastapi import FastAPI
from sqlalchemy import select

from conftest import SettingsFactory
from helpers import PASSWORD, admin_login, bearer, running_app, signup_login
from keyturn.config import Settings
from keyturn.db.engine import create_engine
from keyturn.db.models import ApiKeyRow

pytestmark = pytest.mark.anyio

KEY_FORMAT = re.compile(r"^kt_([a-z2-7]{8})_([A-Za-z0-9_-]{43})$")


async def create_key(client: httpx.AsyncClient, access_token: str, **body: Any) -> dict[str, Any]:
    body.setdefault("name", "ci script")
    answer = await client.post("/v1/me/api-keys", json=body, headers=bearer(access_token))
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


async def stored_row(settings: Settings, key_id: str) -> Any:
    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as connection:
            row = (
                await connection.execute(select(ApiKeyRow).where(ApiKeyRow.id == uuid.UUID(key_id)))
            ).one()
    finally:
        await engine.dispose()
    return row


async def test_key_is_shown_once_and_stored_only_as_a_digest(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    user = await signup_login(client)
    created = await create_key(client, user["access_token"])
    assert set(created) == {"id", "key", "prefix", "name", "scopes", "created_at", "expires_at"}
    match = KEY_FORMAT.match(created["key"])
    assert match is not None, created["key"]
    prefix, secret = match.groups()
    assert created["prefix"] == prefix
    assert created["scopes"] == ["me:read"]
    assert created["expires_at"] is None
    listed = await client.get("/v1/me/api-keys", headers=bearer(user["access_token"]))
    assert listed.status_code == 200
    assert listed.headers["cache-control"] == "no-store"
    (item,) = listed.json()["items"]
    assert "key" not in item
    assert secret not in listed.text
    assert item == {
        "id": created["id"],
        "prefix": prefix,
        "name": "ci script",
        "scopes": ["me:read"],
        "created_at": created["created_at"],
        "last_used_at": None,
        "expires_at": None,
    }
    row = await stored_row(settings, created["id"])
    values = " ".join(str(value) for value in row._mapping.values())
    assert secret not in values
    assert created["key"] not in values
    assert row.prefix == prefix
    assert len(row.digest) == 43  # HMAC-SHA256, urlsafe base64


async def test_key_acts_with_exactly_its_scopes(client: httpx.AsyncClient) -> None:
    user = await signup_login(client)
    key = (await create_key(client, user["access_token"]))["key"]
    me = await client.get("/v1/me", headers=bearer(key))
    assert me.status_code == 200, me.text
    assert me.json()["id"] == user["user"]["id"]
    patch = await client.patch("/v1/me", json={"name": "x"}, headers=bearer(key))
    assert patch.status_code == 403
    assert patch.json()["code"] == "permission_denied"
    sessions = await client.get("/v1/me/sessions", headers=bearer(key))
    assert sessions.status_code == 403
    # A user's key never reaches an admin route without the permission and the scope.
    admin_route = await client.get("/v1/admin/users", headers=bearer(key))
    assert admin_route.status_code == 403

    writer = (await create_key(client, user["access_token"], scopes=["me:write", "sessions:read"]))[
        "key"
    ]
    renamed = await client.patch("/v1/me", json={"name": "Scripted"}, headers=bearer(writer))
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "Scripted"
    listed = await client.get("/v1/me/sessions", headers=bearer(writer))
    assert listed.status_code == 200
    # A key has no session of its own: no listed session is "current".
    assert [item["current"] for item in listed.json()["items"]] == [False]
    assert (await client.get("/v1/me", headers=bearer(writer))).status_code == 403


async def test_admin_key_with_users_read_works_on_admin_routes(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await admin_login(app, client)
    key = (await create_key(client, admin["access_token"], scopes=["users:read"]))["key"]
    users = await client.get("/v1/admin/users", headers=bearer(key))
    assert users.status_code == 200, users.text
    # users:read does not stretch to users:write, which the owner holds but the key does not.
    victim = await signup_login(client)
    lock = await client.post(f"/v1/admin/users/{victim['user']['id']}/lock", headers=bearer(key))
    assert lock.status_code == 403
    assert lock.json()["code"] == "permission_denied"
    # The owner losing the permission takes the key's use of it away at once. Another
    # admin exists first: the last one may not drop its own role (409 last_admin), and
    # this test must not depend on admins left behind by others in a shared database.
    await admin_login(app, client)
    removed = await client.delete(
        f"/v1/admin/users/{admin['user']['id']}/roles/admin",
        headers=bearer(admin["access_token"]),
    )
    assert removed.status_code == 204
    assert (await client.get("/v1/admin/users", headers=bearer(key))).status_code == 403


async def test_scopes_beyond_the_owner_are_refused(client: httpx.AsyncClient) -> None:
    user = await signup_login(client)
    headers = bearer(user["access_token"])
    beyond = await client.post(
        "/v1/me/api-keys", json={"name": "x", "scopes": ["me:read", "users:read"]}, headers=headers
    )
    assert beyond.status_code == 403
    assert beyond.json()["code"] == "permission_escalation"
    assert beyond.json()["errors"] == [{"field": "scopes", "message": "not held: users:read"}]
    unknown = await client.post(
        "/v1/me/api-keys", json={"name": "x", "scopes": ["root"]}, headers=headers
    )
    assert unknown.status_code == 422
    assert unknown.json()["code"] == "unknown_scope"
    empty = await client.post("/v1/me/api-keys", json={"name": "x", "scopes": []}, headers=headers)
    assert empty.status_code == 422
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    expired = await client.post(
        "/v1/me/api-keys", json={"name": "x", "expires_at": past}, headers=headers
    )
    assert expired.status_code == 422
    assert expired.json()["errors"][0]["field"] == "expires_at"
    naive = await client.post(
        "/v1/me/api-keys", json={"name": "x", "expires_at": "2999-01-01T00:00:00"}, headers=headers
    )
    assert naive.status_code == 422
    listed = await client.get("/v1/me/api-keys", headers=headers)
    assert listed.json()["items"] == []


async def test_expired_key_is_refused(client: httpx.AsyncClient) -> None:
    user = await signup_login(client)
    expires = datetime.now(UTC) + timedelta(hours=1)
    created = await create_key(client, user["access_token"], expires_at=expires.isoformat())
    assert abs(datetime.fromisoformat(created["expires_at"]) - expires) < timedelta(seconds=1)
    assert (await client.get("/v1/me", headers=bearer(created["key"]))).status_code == 200
    with time_machine.travel(expires + timedelta(seconds=1), tick=False):
        late = await client.get("/v1/me", headers=bearer(created["key"]))
    assert late.status_code == 401
    assert late.json()["code"] == "invalid_token"
    assert late.headers["www-authenticate"] == (
        'Bearer error="invalid_token", '
        'error_description="The API key is invalid, expired or revoked."'
    )


async def test_revoked_key_is_refused_and_others_keys_are_not_found(
    client: httpx.AsyncClient,
) -> None:
    owner = await signup_login(client)
    other = await signup_login(client)
    created = await create_key(client, owner["access_token"])
    key = created["key"]
    stranger = await client.delete(
        f"/v1/me/api-keys/{created['id']}", headers=bearer(other["access_token"])
    )
    assert stranger.status_code == 404
    assert stranger.json()["code"] == "not_found"
    assert (await client.get("/v1/me", headers=bearer(key))).status_code == 200
    revoked = await client.delete(
        f"/v1/me/api-keys/{created['id']}", headers=bearer(owner["access_token"])
    )
    assert revoked.status_code == 204
    refused = await client.get("/v1/me", headers=bearer(key))
    assert refused.status_code == 401
    assert refused.json()["code"] == "invalid_token"
    again = await client.delete(
        f"/v1/me/api-keys/{created['id']}", headers=bearer(owner["access_token"])
    )
    assert again.status_code == 404
    listed = await client.get("/v1/me/api-keys", headers=bearer(owner["access_token"]))
    assert listed.json()["items"] == []


async def test_key_is_never_a_fresh_login(client: httpx.AsyncClient) -> None:
    user = await signup_login(client)
    key = (
        await create_key(
            client,
            user["access_token"],
            scopes=["me:read", "me:write", "sessions:read", "sessions:write"],
        )
    )["key"]
    headers = bearer(key)
    attempts = [
        (
            "POST",
            "/v1/me/password",
            {"current_password": PASSWORD, "new_password": "brand new password 42"},
        ),
        ("POST", "/v1/me/email", {"password": PASSWORD, "new_email": "new@example.com"}),
        ("DELETE", "/v1/me", {"password": PASSWORD}),
        ("POST", "/v1/me/api-keys", {"name": "child", "scopes": ["me:read"]}),
    ]
    for method, path, body in attempts:
        answer = await client.request(method, path, json=body, headers=headers)
        assert answer.status_code == 403, (method, path, answer.text)
        assert answer.json()["code"] == "fresh_login_required", (method, path)
    # Even a key without me:write is told why, not just "missing scope".
    reader = (await create_key(client, user["access_token"]))["key"]
    answer = await client.post("/v1/me/api-keys", json={"name": "child"}, headers=bearer(reader))
    assert answer.json()["code"] == "fresh_login_required"
    logout = await client.post("/v1/auth/logout", headers=headers)
    assert logout.status_code == 403
    assert logout.json()["code"] == "permission_denied"
    # Nothing changed: the password still works, the account exists, one key was made.
    login = await client.post("/v1/auth/login", json={"email": user["email"], "password": PASSWORD})
    assert login.status_code == 200
    listed = await client.get("/v1/me/api-keys", headers=bearer(user["access_token"]))
    assert len(listed.json()["items"]) == 2


async def test_malformed_and_wrong_keys_are_refused_then_throttled(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(limit_failures_per_account_ip=4)
    async with running_app(settings) as client:
        user = await signup_login(client)
        real = (await create_key(client, user["access_token"]))["key"]
        match = KEY_FORMAT.match(real)
        assert match is not None
        prefix = match.group(1)
        wrong_secret = f"kt_{prefix}_{'A' * 43}"
        for bad in ["kt_", "kt_x_y", wrong_secret, f"kt_aaaaaaaa_{'B' * 43}"]:
            answer = await client.get("/v1/me", headers=bearer(bad))
            assert answer.status_code == 401, (bad, answer.text)
            assert answer.json()["code"] == "invalid_token"
            assert bad not in answer.text or len(bad) <= 8
        # Over the per-IP failure limit: 429 before any check, even for the right key.
        limited = await client.get("/v1/me", headers=bearer(wrong_secret))
        assert limited.status_code == 429
        assert limited.json()["code"] == "rate_limited"
        assert "retry-after" in limited.headers
        assert (await client.get("/v1/me", headers=bearer(real))).status_code == 429
        # Access tokens are a different credential and still work from the same address.
        me = await client.get("/v1/me", headers=bearer(user["access_token"]))
        assert me.status_code == 200


async def test_last_used_is_written_in_batches(app: FastAPI, client: httpx.AsyncClient) -> None:
    user = await signup_login(client)
    created = await create_key(client, user["access_token"])
    headers = bearer(user["access_token"])
    for _ in range(3):
        assert (await client.get("/v1/me", headers=bearer(created["key"]))).status_code == 200
    listed = await client.get("/v1/me/api-keys", headers=headers)
    # Not one write per request: nothing yet until the batch is flushed.
    assert listed.json()["items"][0]["last_used_at"] is None
    flushed = await app.state.services.api_keys.flush_usage()
    assert flushed == 1
    listed = await client.get("/v1/me/api-keys", headers=headers)
    used = listed.json()["items"][0]["last_used_at"]
    assert used is not None
    assert datetime.fromisoformat(used) >= datetime.fromisoformat(created["created_at"])
    assert await app.state.services.api_keys.flush_usage() == 0


async def test_key_lifecycle_is_audited(app: FastAPI, client: httpx.AsyncClient) -> None:
    admin = await admin_login(app, client)
    created = await create_key(client, admin["access_token"], scopes=["audit:read"])
    await client.get("/v1/me", headers=bearer("kt_aaaaaaaa_" + "C" * 43))
    revoked = await client.delete(
        f"/v1/me/api-keys/{created['id']}", headers=bearer(admin["access_token"])
    )
    assert revoked.status_code == 204
    headers = bearer(admin["access_token"])
    for event_type in ("key.created", "key.revoked"):
        events = await client.get(
            "/v1/admin/audit-events",
            params={"type": event_type, "user_id": admin["user"]["id"]},
            headers=headers,
        )
        (event,) = events.json()["items"]
        assert event["data"]["key_id"] == created["id"]
    failed = await client.get(
        "/v1/admin/audit-events", params={"type": "key.failed"}, headers=headers
    )
    assert failed.json()["items"][0]["data"] == {"factor": "api_key"}
    assert "C" * 43 not in failed.text
