"""Issue 12 finding 24: a compromised signing key can be cut off at once.

ASVS v5.0.0-9.1.3 (token keys come only from trusted sources: a revoked key is no longer
one) and v5.0.0-11.1.1 (the key lifecycle covers a compromised key).

The attacker holds a stolen private key (or tokens it signed). Before the fix the only
remedy was a forced rotation, which kept the old key published and trusted until its
tokens expired. Now ``POST /v1/admin/keys/{kid}/revoke`` takes it out of the JWKS and makes
every verifying pathway refuse its tokens (first-party bearer, /oauth2/userinfo,
/oauth2/introspect, id_token_hint), on every replica at once; sessions live on through a
refresh under the new key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI

from conftest import REDIS_URL, SettingsFactory
from helpers import PASSWORD, bearer, lifespan, new_email, signup_login
from keyturn.app import create_app
from keyturn.config import Settings
from keyturn.infra.revocation import MemoryRevocationStore
from keyturn.security.jose import Signer
from keyturn.security.keys import load_key
from keyturn.services.accounts import AccessTokenService
from keyturn.services.signing_keys import deny_list_entry
from oauth_helpers import basic, grant, register, signed_in, token
from smtp_server import free_port

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(make_settings: SettingsFactory, private_database_url: str) -> Settings:
    """A database of its own: these tests revoke the keys other tests would sign with."""
    return make_settings(database_url=private_database_url)


async def _admin(app: FastAPI, client: httpx.AsyncClient) -> dict[str, str]:
    email = new_email()
    await app.state.services.users.create_admin(email, PASSWORD)
    answer = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return bearer(answer.json()["access_token"])


def _kid(jws: str) -> str:
    kid: str = jwt.get_unverified_header(jws)["kid"]
    return kid


async def _jwks_kids(client: httpx.AsyncClient) -> set[str]:
    answer = await client.get("/.well-known/jwks.json")
    assert answer.status_code == 200
    return {key["kid"] for key in answer.json()["keys"]}


async def _keys(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, dict[str, Any]]:
    answer = await client.get("/v1/admin/keys", headers=headers)
    assert answer.status_code == 200, answer.text
    return {key["kid"]: key for key in answer.json()["items"]}


async def test_asvs_9_1_3_revoked_active_key_is_unpublished_and_refused_on_every_pathway(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    user = await signup_login(client)
    stolen = _kid(user["access_token"])
    rp = await register(app, client)
    oauth = await grant(app, rp, "openid offline_access me:read")
    assert _kid(oauth.access_token) == stolen
    before = await _keys(client, await _admin(app, client))
    waiting = [k for k, v in before.items() if v["alg"] == "ES256" and v["state"] == "next"]
    # Everything works before the revocation.
    assert (await client.get("/v1/me", headers=bearer(user["access_token"]))).status_code == 200
    info = await client.get("/oauth2/userinfo", headers=bearer(oauth.access_token))
    assert info.status_code == 200

    # The attacker's own token, signed with the stolen private key.
    private = app.state.services.keys._material(
        next(r for r in await _records(app) if r.kid == stolen)
    )
    forged = Signer(load_key(private.alg, private.private_pem)).sign(
        jwt.decode(user["access_token"], options={"verify_signature": False}), typ="at+jwt"
    )
    assert (await client.get("/v1/me", headers=bearer(forged))).status_code == 200

    admin = await _admin(app, client)
    answer = await client.post(f"/v1/admin/keys/{stolen}/revoke", headers=admin)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["kid"] == stolen
    assert body["state"] == "revoked"
    assert body["previous_state"] == "active"
    assert body["already_revoked"] is False
    # The chain's waiting next key signs from now on: signing never stops.
    assert body["activated"] == waiting[0]

    assert stolen not in await _jwks_kids(client)
    for tok in (user["access_token"], forged, admin["Authorization"].split()[1]):
        refused = await client.get("/v1/me", headers=bearer(tok))
        assert refused.status_code == 401, refused.text
    assert (
        await client.get("/oauth2/userinfo", headers=bearer(oauth.access_token))
    ).status_code == 401
    introspected = await client.post(
        "/oauth2/introspect", data={"token": oauth.access_token}, auth=basic(rp)
    )
    assert introspected.json() == {"active": False}

    # The sessions live on: refresh tokens are opaque, the new pair is signed by the new key.
    refreshed = await client.post("/v1/auth/refresh", json={"refresh_token": user["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    assert _kid(refreshed.json()["access_token"]) == body["activated"]
    me = await client.get("/v1/me", headers=bearer(refreshed.json()["access_token"]))
    assert me.status_code == 200
    renewed = await token(client, rp, grant_type="refresh_token", refresh_token=oauth.refresh_token)
    assert renewed.status_code == 200, renewed.text
    assert _kid(renewed.json()["access_token"]) == body["activated"]
    info = await client.get("/oauth2/userinfo", headers=bearer(renewed.json()["access_token"]))
    assert info.status_code == 200

    # Listed as revoked, private part wiped, audited; a second call changes nothing.
    admin = await _admin(app, client)
    listed = await _keys(client, admin)
    assert listed[stolen]["state"] == "revoked"
    assert listed[stolen]["published"] is False
    assert listed[body["activated"]]["state"] == "active"
    assert [k for k, v in listed.items() if v["alg"] == "ES256" and v["state"] == "next"]
    (record,) = [r for r in await _records(app) if r.kid == stolen]
    assert record.private_key_encrypted == b""
    again = await client.post(f"/v1/admin/keys/{stolen}/revoke", headers=admin)
    assert again.status_code == 200
    assert again.json()["already_revoked"] is True
    events = await client.get(
        "/v1/admin/audit-events", params={"type": "admin.key_revoked"}, headers=admin
    )
    assert [e["data"]["kid"] for e in events.json()["items"]].count(stolen) == 2


async def _records(app: FastAPI) -> list[Any]:
    async with app.state.services.auth._uow_factory() as uow:
        records: list[Any] = await uow.signing_keys.list_all()
    return records


async def test_asvs_11_1_1_revoking_next_or_retired_keys_and_unknown_kids(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await _admin(app, client)
    keys = await _keys(client, admin)
    (waiting,) = [k for k, v in keys.items() if v["alg"] == "RS256" and v["state"] == "next"]
    (active,) = [k for k, v in keys.items() if v["alg"] == "RS256" and v["state"] == "active"]
    answer = await client.post(f"/v1/admin/keys/{waiting}/revoke", headers=admin)
    assert answer.status_code == 200, answer.text
    assert answer.json()["previous_state"] == "next"
    assert answer.json()["activated"] is None
    after = await _keys(client, admin)
    # The active key still signs; a fresh next key is published in place of the revoked one.
    assert after[active]["state"] == "active"
    fresh = [k for k, v in after.items() if v["alg"] == "RS256" and v["state"] == "next"]
    assert len(fresh) == 1
    assert fresh[0] != waiting
    assert waiting not in await _jwks_kids(client)

    # A retired key (after a forced rotation) is cut off before its window ends.
    rotated = await client.post("/v1/admin/keys/rotate", params={"force": "true"}, headers=admin)
    assert rotated.status_code == 200, rotated.text
    old = rotated.json()["retired"][0]
    assert old in await _jwks_kids(client)
    assert (await client.get("/v1/me", headers=admin)).status_code == 200  # signed by `old`
    revoked = await client.post(f"/v1/admin/keys/{old}/revoke", headers=admin)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["previous_state"] == "retired"
    # The admin's own token was signed by it: refused from now on.
    assert (await client.get("/v1/me", headers=admin)).status_code == 401
    admin = await _admin(app, client)
    again = await client.post(f"/v1/admin/keys/{old}/revoke", headers=admin)
    assert again.status_code == 200
    assert again.json()["already_revoked"] is True
    assert old not in await _jwks_kids(client)

    for unknown in ("no-such-kid", "x" * 64):
        missing = await client.post(f"/v1/admin/keys/{unknown}/revoke", headers=admin)
        assert missing.status_code == 404
        assert missing.json()["code"] == "unknown_signing_key"
    too_long = await client.post(f"/v1/admin/keys/{'x' * 65}/revoke", headers=admin)
    assert too_long.status_code == 422
    # Only keys:write may revoke.
    plain = await signup_login(client)
    denied = await client.post(
        f"/v1/admin/keys/{active}/revoke", headers=bearer(plain["access_token"])
    )
    assert denied.status_code == 403


async def test_asvs_9_1_3_id_token_signed_by_a_revoked_key_is_no_hint(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """RP-initiated logout trusts a valid id_token_hint (no confirmation asked); one signed
    by a revoked key must be treated like a forged one: the user is asked."""
    back = "https://app.example.com/logged-out"
    rp = await register(app, client, post_logout_redirect_uris=[back])
    oauth = await grant(app, rp, "openid")
    hint = oauth.id_token
    params = {"id_token_hint": hint, "post_logout_redirect_uri": back}
    # A second browser, signed in as someone else: the hint alone decides what happens.
    await signed_in(client)
    admin = await _admin(app, client)
    revoked = await client.post(f"/v1/admin/keys/{_kid(hint)}/revoke", headers=admin)
    assert revoked.status_code == 200, revoked.text
    answer = await client.get("/oauth2/logout", params=params)
    assert answer.status_code == 200
    assert "location" not in answer.headers
    assert back not in answer.text


@asynccontextmanager
async def _replica(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """One more app instance (a replica) on ``settings``, lifespan and all."""
    application = create_app(settings)
    async with lifespan(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield application, http


def _replica_settings(
    make_settings: SettingsFactory, database_url: str, redis_url: str | None = REDIS_URL
) -> Settings:
    if redis_url is None:
        pytest.skip("several replicas need Redis (DESIGN.md section 6)")
    # A key cache that never goes stale during the test: only the push can tell B.
    return make_settings(
        database_url=database_url,
        redis_url=redis_url,
        key_cache_seconds=3600,
        key_publish_ahead_seconds=7200,
    )


async def test_asvs_9_1_3_another_replica_refuses_at_once(
    make_settings: SettingsFactory, private_database_url: str
) -> None:
    """Two app instances on one database and one Redis: replica B holds the key (it
    verified a token a moment ago, its key cache is fresh) and still refuses the token the
    moment replica A revoked the key; B's JWKS drops it and B signs with the new key."""
    settings = _replica_settings(make_settings, private_database_url)
    async with _replica(settings) as (app_a, a), _replica(settings) as (_, b):
        user = await signup_login(a)
        assert (await b.get("/v1/me", headers=bearer(user["access_token"]))).status_code == 200
        stolen = _kid(user["access_token"])
        assert stolen in await _jwks_kids(b)
        answer = await a.post(f"/v1/admin/keys/{stolen}/revoke", headers=await _admin(app_a, a))
        assert answer.status_code == 200, answer.text

        assert stolen not in await _jwks_kids(b)
        assert (await b.get("/v1/me", headers=bearer(user["access_token"]))).status_code == 401
        refreshed = await b.post("/v1/auth/refresh", json={"refresh_token": user["refresh_token"]})
        assert refreshed.status_code == 200, refreshed.text
        assert _kid(refreshed.json()["access_token"]) == answer.json()["activated"]
        me = await a.get("/v1/me", headers=bearer(refreshed.json()["access_token"]))
        assert me.status_code == 200


async def test_asvs_9_1_3_a_signing_only_replica_switches_before_its_next_token(
    make_settings: SettingsFactory, private_database_url: str
) -> None:
    """Replica B has verified nothing since the revocation: its next token is signed by
    the new key (checked before signing), never by the revoked one."""
    settings = _replica_settings(make_settings, private_database_url)
    async with _replica(settings) as (app_a, a), _replica(settings) as (_, b):
        user = await signup_login(b)
        stolen = _kid(user["access_token"])
        answer = await a.post(f"/v1/admin/keys/{stolen}/revoke", headers=await _admin(app_a, a))
        assert answer.status_code == 200, answer.text
        fresh = await b.post("/v1/auth/login", json={"email": user["email"], "password": PASSWORD})
        assert fresh.status_code == 200, fresh.text
        assert _kid(fresh.json()["access_token"]) == answer.json()["activated"]


async def test_asvs_9_1_3_replicas_fail_closed_when_redis_is_down(
    make_settings: SettingsFactory, private_database_url: str
) -> None:
    """The shared deny-list is unreachable: A cannot push the revoked kid, and B (whose key
    cache is fresh) asks the database instead of assuming "not revoked"."""
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    settings = _replica_settings(make_settings, private_database_url, redis_url=dead)
    async with _replica(settings) as (app_a, a), _replica(settings) as (_, b):
        user = await signup_login(a)
        assert (await b.get("/v1/me", headers=bearer(user["access_token"]))).status_code == 200
        stolen = _kid(user["access_token"])
        answer = await a.post(f"/v1/admin/keys/{stolen}/revoke", headers=await _admin(app_a, a))
        assert answer.status_code == 200, answer.text
        assert (await b.get("/v1/me", headers=bearer(user["access_token"]))).status_code == 401
        assert stolen not in await _jwks_kids(b)


async def test_asvs_9_1_3_a_rebuilt_deny_list_keeps_the_revoked_kid(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Redis restarted empty: the deny-list is rebuilt from the database (sessions and
    revoked keys alike) before it vouches for anything."""
    user = await signup_login(client)
    stolen = _kid(user["access_token"])
    answer = await client.post(f"/v1/admin/keys/{stolen}/revoke", headers=await _admin(app, client))
    assert answer.status_code == 200, answer.text
    services = app.state.services
    empty = MemoryRevocationStore()
    rebuilt = AccessTokenService(
        keys=services.keys,
        revocations=empty,
        uow_factory=services.auth._uow_factory,
        issuer="http://testserver",
        audience="keyturn",
        ttl=600,
    )
    assert not await empty.is_revoked(deny_list_entry(stolen))
    await rebuilt.restore_deny_list()
    assert await empty.is_revoked(deny_list_entry(stolen))
    assert not await empty.is_revoked(deny_list_entry(answer.json()["activated"]))
