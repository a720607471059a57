"""Refusals around managing passkeys (issue 15): another user's passkey, a stale sign-in,
an API key, junk bodies, an unreachable ceremony store."""

from __future__ import annotations

import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import time_machine
from fastapi import FastAPI

from helpers import bearer, signup_login
from keyturn.config import Settings
from keyturn.infra.ceremonies import RedisCeremonyStore
from keyturn.services.mfa import PasskeyService
from passkey_helpers import ISSUER, authenticator, creation_options, enrol
from webauthn_authenticator import Authenticator

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(make_settings: Any) -> Settings:
    settings: Settings = make_settings(issuer=ISSUER)
    return settings


def passkeys(app: FastAPI) -> PasskeyService:
    service: PasskeyService = app.state.services.mfa.passkeys
    return service


async def enrolled(client: httpx.AsyncClient) -> tuple[dict[str, Any], Authenticator]:
    user = await signup_login(client)
    device = authenticator()
    await enrol(client, user["access_token"], device)
    return user, device


async def test_another_users_passkey_is_not_found(client: httpx.AsyncClient) -> None:
    owner, _ = await enrolled(client)
    listed = await client.get("/v1/me/passkeys", headers=bearer(owner["access_token"]))
    passkey_id = listed.json()["items"][0]["id"]
    intruder = await signup_login(client)
    for target in (passkey_id, str(uuid.uuid4())):
        renamed = await client.patch(
            f"/v1/me/passkeys/{target}",
            json={"name": "mine"},
            headers=bearer(intruder["access_token"]),
        )
        removed = await client.delete(
            f"/v1/me/passkeys/{target}", headers=bearer(intruder["access_token"])
        )
        assert (renamed.status_code, renamed.json()["code"]) == (404, "not_found")
        assert (removed.status_code, removed.json()["code"]) == (404, "not_found")
        assert renamed.json()["detail"] == removed.json()["detail"]
    after = await client.get("/v1/me/passkeys", headers=bearer(owner["access_token"]))
    assert after.json()["items"] == listed.json()["items"]


async def test_adding_and_removing_need_a_recent_sign_in(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    user, _ = await enrolled(client)
    token = user["access_token"]
    passkey_id = (await client.get("/v1/me/passkeys", headers=bearer(token))).json()["items"][0][
        "id"
    ]
    with time_machine.travel(datetime.now(UTC), tick=False) as traveller:
        options = await creation_options(client, token)
        traveller.shift(timedelta(seconds=settings.reauthentication_max_age + 1))
        answers = [
            await client.post("/v1/me/passkeys/options", headers=bearer(token)),
            await client.post(
                "/v1/me/passkeys",
                json={"credential": authenticator().register(options)},
                headers=bearer(token),
            ),
            await client.delete(f"/v1/me/passkeys/{passkey_id}", headers=bearer(token)),
        ]
        for answer in answers:
            assert (answer.status_code, answer.json()["code"]) == (403, "reauthentication_required")
        # Listing and renaming need no fresh sign-in.
        assert (await client.get("/v1/me/passkeys", headers=bearer(token))).status_code == 200
        renamed = await client.patch(
            f"/v1/me/passkeys/{passkey_id}", json={"name": "Old key"}, headers=bearer(token)
        )
        assert renamed.status_code == 200


async def test_an_api_key_cannot_add_or_remove_passkeys(client: httpx.AsyncClient) -> None:
    user, _ = await enrolled(client)
    created = await client.post(
        "/v1/me/api-keys",
        json={"name": "ci", "scopes": ["me:read", "me:write"]},
        headers=bearer(user["access_token"]),
    )
    assert created.status_code == 201, created.text
    key = bearer(created.json()["key"])
    passkey_id = (await client.get("/v1/me/passkeys", headers=key)).json()["items"][0]["id"]
    options = await client.post("/v1/me/passkeys/options", headers=key)
    removed = await client.delete(f"/v1/me/passkeys/{passkey_id}", headers=key)
    for answer in (options, removed):
        assert answer.status_code == 403, answer.text
        assert answer.json()["code"] in ("fresh_login_required", "reauthentication_required")


@pytest.mark.parametrize(
    "credential",
    [
        {"id": "x"},
        {"id": "a", "rawId": "a", "type": "password", "response": {}},
        {"id": "a b", "rawId": "a", "type": "public-key", "response": {"clientDataJSON": "a"}},
        "not an object",
        None,
    ],
)
async def test_junk_credentials_are_422(client: httpx.AsyncClient, credential: Any) -> None:
    user = await signup_login(client)
    for path, headers in (
        ("/v1/me/passkeys", bearer(user["access_token"])),
        ("/v1/auth/passkey", {}),
    ):
        answer = await client.post(path, json={"credential": credential}, headers=headers)
        assert answer.status_code == 422, answer.text


async def test_well_shaped_garbage_is_refused_never_a_500(client: httpx.AsyncClient) -> None:
    user = await signup_login(client)
    base = {"id": "AAAA", "rawId": "AAAA", "type": "public-key"}
    registration = {**base, "response": {"clientDataJSON": "e30", "attestationObject": "oA"}}
    assertion = {
        **base,
        "response": {"clientDataJSON": "e30", "authenticatorData": "AA", "signature": "AA"},
    }
    registered = await client.post(
        "/v1/me/passkeys", json={"credential": registration}, headers=bearer(user["access_token"])
    )
    assert (registered.status_code, registered.json()["code"]) == (400, "webauthn_invalid")
    signed_in = await client.post("/v1/auth/passkey", json={"credential": assertion})
    assert (signed_in.status_code, signed_in.json()["code"]) == (401, "invalid_credentials")


async def test_an_unreachable_ceremony_store_is_503_never_a_pass(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:  # a local port where nothing listens
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    user, device = await enrolled(client)
    options = (await client.post("/v1/auth/passkey/options", json={})).json()
    dead = RedisCeremonyStore.from_url(f"redis://127.0.0.1:{dead_port}/0", prefix="p:")
    monkeypatch.setattr(passkeys(app)._challenges, "_store", dead)
    try:
        answers = [
            await client.post("/v1/auth/passkey/options"),
            await client.post(
                "/v1/auth/passkey", json={"credential": device.authenticate(options)}
            ),
            await client.post("/v1/me/passkeys/options", headers=bearer(user["access_token"])),
        ]
    finally:
        await dead.close()
    for answer in answers:
        assert (answer.status_code, answer.json()["code"]) == (503, "service_unavailable")
