"""Signing keys live in the database; a key made by another replica is picked up."""

from __future__ import annotations

import base64
import json
import time

import httpx
import jwt
import pytest
from fastapi import FastAPI
from jwt.algorithms import get_default_algorithms

from helpers import bearer, signup_login
from keyturn.config import Settings
from keyturn.db.engine import create_engine, session_factory
from keyturn.db.unit_of_work import SqlUnitOfWork
from keyturn.domain import SigningKeyRecord, utcnow
from keyturn.security.aead import Aead
from keyturn.security.digests import KeyRing
from keyturn.security.jose import Signer
from keyturn.security.keys import generate_key, thumbprint

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


# --- one chain per algorithm: what the running app accepts -------------------------------


async def _private_key(settings: Settings, kid: str) -> bytes:
    engine = create_engine(settings.database_url)
    try:
        async with SqlUnitOfWork(session_factory(engine)) as uow:
            records = {record.kid: record for record in await uow.signing_keys.list_published()}
    finally:
        await engine.dispose()
    stored = records[kid].private_key_encrypted
    return Aead(KeyRing.from_strings(settings.secret_key)).decrypt(stored, aad=kid.encode())


def _forge(header: dict[str, object], claims: dict[str, object], alg: str, pem: bytes) -> str:
    """Signs any header with PyJWT's algorithm ``alg`` (independent of our facade)."""

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    algorithm = get_default_algorithms()[alg]
    signature = algorithm.sign(signing_input.encode(), algorithm.prepare_key(pem))
    return f"{signing_input}.{b64(signature)}"


async def test_the_jwks_publishes_every_chain(client: httpx.AsyncClient, app: FastAPI) -> None:
    keys = app.state.services.keys
    assert keys.algorithms == ("ES256", "RS256")
    published = (await client.get("/.well-known/jwks.json")).json()["keys"]
    listed = {key.kid: key for key in await keys.list_keys() if key.published}
    assert {key["kid"] for key in published} == set(listed)
    for jwk in published:
        assert jwk["alg"] == listed[jwk["kid"]].alg
        assert jwk["use"] == "sig"
        assert jwk["kid"] == thumbprint(jwk)  # RFC 7638
        assert not {"d", "p", "q"} & jwk.keys()  # public parts only
        assert jwk["kty"] == {"ES256": "EC", "RS256": "RSA"}[jwk["alg"]]
    for alg in keys.algorithms:
        states = [key.state for key in listed.values() if key.alg == alg]
        assert states.count("active") == 1
        assert states.count("next") == 1
        assert keys.signer_for(alg).alg == alg


async def test_an_id_token_signed_by_our_own_keys_is_not_an_access_token(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """RFC 9068 section 4 and RFC 8725 section 3.11: an ID Token (typ JWT) carrying every
    claim of a valid access token, signed by an active key of ours, is still refused."""
    tokens = await signup_login(client)
    claims = claims_of(tokens["access_token"])
    services = app.state.services
    for alg in ("RS256", "ES256"):
        id_token = services.id_tokens.sign(claims, alg=alg)
        assert jwt.get_unverified_header(id_token)["typ"] == "JWT"
        me = await client.get("/v1/me", headers=bearer(id_token))
        assert me.status_code == 401
        assert me.json()["code"] == "invalid_token"
    # Whereas the same claims typed as an access token, with either chain's key, pass.
    for alg in ("RS256", "ES256"):
        access = services.keys.sign(claims, typ="at+jwt", alg=alg)
        assert (await client.get("/v1/me", headers=bearer(access))).status_code == 200


async def test_a_token_whose_alg_is_not_its_keys_is_refused(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings
) -> None:
    """RFC 8725 section 3.1: the key named by kid decides the algorithm, across chains."""
    tokens = await signup_login(client)
    claims = claims_of(tokens["access_token"])
    keys = app.state.services.keys
    rs256, es256 = keys.signer_for("RS256").kid, keys.signer_for("ES256").kid
    rsa_pem = await _private_key(settings, rs256)
    typ = {"typ": "at+jwt"}
    genuine = _forge({"alg": "RS256", "kid": rs256, **typ}, claims, "RS256", rsa_pem)
    assert (await client.get("/v1/me", headers=bearer(genuine))).status_code == 200
    forgeries = [
        # An RS256 token (RS256 key and kid) whose header says ES256.
        _forge({"alg": "ES256", "kid": rs256, **typ}, claims, "RS256", rsa_pem),
        # Signed by the RS256 key but labelled with the ES256 key's kid (either alg).
        _forge({"alg": "RS256", "kid": es256, **typ}, claims, "RS256", rsa_pem),
        _forge({"alg": "ES256", "kid": es256, **typ}, claims, "RS256", rsa_pem),
    ]
    for forged in forgeries:
        me = await client.get("/v1/me", headers=bearer(forged))
        assert me.status_code == 401, forged
        assert me.json()["code"] == "invalid_token"
