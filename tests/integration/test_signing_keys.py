"""Signing keys live in the database; a key made by another replica is picked up."""

from __future__ import annotations

import base64
import json
import time

import httpx
import jwt
import pytest
from fastapi import FastAPI

from helpers import bearer, signup_login
from keyturn.config import Settings
from keyturn.db.engine import create_engine, session_factory
from keyturn.db.unit_of_work import SqlUnitOfWork
from keyturn.domain import SigningKeyRecord, utcnow
from keyturn.security.aead import Aead
from keyturn.security.digests import KeyRing
from keyturn.security.jose import Signer
from keyturn.security.keys import generate_key

pytestmark = pytest.mark.anyio


def claims_of(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    decoded: dict[str, object] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


async def test_key_added_by_another_replica_verifies_at_once(
    client: httpx.AsyncClient, settings: Settings, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = await signup_login(client)
    # The key cache was loaded a moment ago; let a few seconds pass on its clock only.
    keys = app.state.services.keys
    monkeypatch.setattr(keys, "_clock", lambda: time.monotonic() + 5)
    material = generate_key("ES256")
    aead = Aead(KeyRing.from_strings(settings.secret_key))
    engine = create_engine(settings.database_url)
    try:
        async with SqlUnitOfWork(session_factory(engine)) as uow:
            now = utcnow()
            await uow.signing_keys.add(
                SigningKeyRecord(
                    kid=material.kid,
                    alg=material.alg,
                    state="retired",
                    private_key_encrypted=aead.encrypt(
                        material.private_pem, aad=material.kid.encode()
                    ),
                    public_jwk=material.public_jwk,
                    created_at=now,
                    activated_at=now,
                    retired_at=now,
                )
            )
            await uow.commit()
    finally:
        await engine.dispose()
    # Same claims, signed by the key this process has never loaded.
    foreign = Signer(material).sign(claims_of(tokens["access_token"]), typ="at+jwt")
    me = await client.get("/v1/me", headers=bearer(foreign))
    assert me.status_code == 200
    # Garbage does not make every request reload: the cache is fresh again now.
    assert not await keys.reload_if_older_than(1.0)
    published = (await client.get("/.well-known/jwks.json")).json()["keys"]
    assert material.kid in {key["kid"] for key in published}


async def test_private_keys_are_encrypted_at_rest(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    tokens = await signup_login(client)
    kid = jwt.get_unverified_header(tokens["access_token"])["kid"]
    engine = create_engine(settings.database_url)
    try:
        async with SqlUnitOfWork(session_factory(engine)) as uow:
            records = {record.kid: record for record in await uow.signing_keys.list_published()}
    finally:
        await engine.dispose()
    stored = records[kid].private_key_encrypted
    assert b"PRIVATE KEY" not in stored
    pem = Aead(KeyRing.from_strings(settings.secret_key)).decrypt(stored, aad=kid.encode())
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")


async def test_a_token_without_the_scope_is_refused(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """v5.0.0-8.2.1: the edge checks the route's scope against the token's scope claim."""
    tokens = await signup_login(client)
    claims = claims_of(tokens["access_token"])
    narrow = app.state.services.keys.signer.sign({**claims, "scope": "me:read"}, typ="at+jwt")
    assert (await client.get("/v1/me", headers=bearer(narrow))).status_code == 200
    for method, path in (("PATCH", "/v1/me"), ("GET", "/v1/me/sessions")):
        answer = await client.request(method, path, json={}, headers=bearer(narrow))
        assert answer.status_code == 403
        assert answer.json()["code"] == "permission_denied"
