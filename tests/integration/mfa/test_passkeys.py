"""Passkeys over HTTP (issue 15): registration, listing, renaming, removal, recovery codes
with the first factor, and the passwordless sign-in's tokens."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI

from helpers import admin_headers, bearer, mail_titled, signup_login
from keyturn.config import Settings
from keyturn.services.mfa.wiring import relying_party
from passkey_helpers import ISSUER, RP_ID, authenticator, creation_options, enrol, passwordless
from smtp_server import SmtpServer
from webauthn_authenticator import b64url

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(make_settings: Any) -> Settings:
    settings: Settings = make_settings(issuer=ISSUER)
    return settings


async def audit_events(
    app: FastAPI, client: httpx.AsyncClient, event_type: str, user_id: str
) -> list[dict[str, Any]]:
    answer = await client.get(
        "/v1/admin/audit-events",
        params={"type": event_type, "user_id": user_id},
        headers=await admin_headers(app, client),
    )
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


async def test_creation_options_ask_for_a_discoverable_passkey_of_this_user(
    client: httpx.AsyncClient,
) -> None:
    user = await signup_login(client)
    options = await creation_options(client, user["access_token"])
    assert options["rp"] == {"id": RP_ID, "name": "Keyturn"}
    assert options["user"]["name"] == user["email"]
    assert options["user"]["id"] == b64url(uuid.UUID(user["user"]["id"]).bytes)
    assert options["attestation"] == "none"
    assert options["authenticatorSelection"]["residentKey"] == "required"
    assert options["authenticatorSelection"]["userVerification"] == "preferred"
    assert options["excludeCredentials"] == []
    assert len(options["challenge"]) == 43  # 32 bytes, unpadded base64url
    # A second request gets a fresh challenge.
    assert (await creation_options(client, user["access_token"]))["challenge"] != options[
        "challenge"
    ]


async def test_register_list_rename_remove(
    app: FastAPI, client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    user = await signup_login(client)
    token = user["access_token"]
    device = authenticator()

    first = await enrol(client, token, device, name="  Work   laptop ")
    assert first["passkey"]["name"] == "Work laptop"
    assert first["passkey"]["backed_up"] is False
    assert first["passkey"]["last_used_at"] is None
    # The first factor comes with a set of recovery codes, shown once.
    codes = first["recovery_codes"]
    assert len(codes) == 10
    assert len(set(codes)) == 10

    # The next options exclude the registered credential (no second copy on one device).
    options = await creation_options(client, token)
    assert [c["id"] for c in options["excludeCredentials"]] == [b64url(device.credential.id)]

    second = await enrol(client, token, authenticator(backup_eligible=True, backed_up=True), None)
    assert second["recovery_codes"] is None  # not the first factor
    assert second["passkey"]["name"] == "Passkey"
    assert second["passkey"]["backed_up"] is True

    listed = await client.get("/v1/me/passkeys", headers=bearer(token))
    assert listed.status_code == 200
    assert listed.headers["cache-control"] == "no-store"
    body = listed.json()
    assert body["next_cursor"] is None
    assert [p["id"] for p in body["items"]] == [first["passkey"]["id"], second["passkey"]["id"]]
    assert set(body["items"][0]) == {"id", "name", "created_at", "last_used_at", "backed_up"}

    renamed = await client.patch(
        f"/v1/me/passkeys/{first['passkey']['id']}", json={"name": "Yubikey"}, headers=bearer(token)
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "Yubikey"

    removed = await client.delete(
        f"/v1/me/passkeys/{first['passkey']['id']}", headers=bearer(token)
    )
    assert removed.status_code == 204
    listed = await client.get("/v1/me/passkeys", headers=bearer(token))
    assert [p["id"] for p in listed.json()["items"]] == [second["passkey"]["id"]]

    added = await audit_events(app, client, "mfa.passkey_added", user["user"]["id"])
    assert [event["data"] for event in added] == [
        {"passkey_id": second["passkey"]["id"], "first_factor": False},
        {"passkey_id": first["passkey"]["id"], "first_factor": True},
    ]
    (removed_event,) = await audit_events(app, client, "mfa.passkey_removed", user["user"]["id"])
    assert removed_event["data"] == {"passkey_id": first["passkey"]["id"]}
    # Two "added" and one "removed" (waited for by subject: the outbox may deliver the
    # verification mail and these in any order).
    await mail_titled(smtp, user["email"], "A second factor was removed")
    await mail_titled(smtp, user["email"], "A second factor was added", count=2)
    mails = smtp.messages_to(user["email"])
    subjects = [m["Subject"] for m in mails]
    assert subjects.count("A second factor was added to your account") == 2
    assert any("removed" in s for s in subjects)
    assert any("A passkey (Work laptop)" in m.get_body(("plain",)).get_content() for m in mails)


async def test_removing_the_last_factor_deletes_the_recovery_codes(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    user = await signup_login(client)
    token = user["access_token"]
    created = await enrol(client, token, authenticator())
    assert len(created["recovery_codes"]) == 10
    services = app.state.services
    user_id = uuid.UUID(user["user"]["id"])
    async with services.auth._read_uow_factory() as uow:
        assert (await uow.mfa.status(user_id)).recovery_codes_left == 10
    removed = await client.delete(
        f"/v1/me/passkeys/{created['passkey']['id']}", headers=bearer(token)
    )
    assert removed.status_code == 204
    async with services.auth._read_uow_factory() as uow:
        assert (await uow.mfa.status(user_id)).recovery_codes_left == 0
    # A new first passkey gets a new set again.
    again = await enrol(client, token, authenticator())
    assert len(again["recovery_codes"]) == 10


async def test_the_same_credential_cannot_be_registered_twice(client: httpx.AsyncClient) -> None:
    user = await signup_login(client)
    other = await signup_login(client)
    device = authenticator()
    await enrol(client, user["access_token"], device)
    options = await creation_options(client, other["access_token"])
    # A response whose rawId is not the attested credential id is refused.
    garbled = device.register(options)
    garbled["id"] = garbled["rawId"] = b64url(device.credentials[0].id)
    answer = await client.post(
        "/v1/me/passkeys", json={"credential": garbled}, headers=bearer(other["access_token"])
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "webauthn_invalid"
    # The same credential attested again for another account: one owner only.
    options = await creation_options(client, other["access_token"])
    again = device.register(options, reuse=device.credentials[0])
    answer = await client.post(
        "/v1/me/passkeys", json={"credential": again}, headers=bearer(other["access_token"])
    )
    assert answer.status_code == 409, answer.text
    assert answer.json()["code"] == "mfa_already_enrolled"
    listed = await client.get("/v1/me/passkeys", headers=bearer(other["access_token"]))
    assert listed.json()["items"] == []


@pytest.mark.parametrize(
    ("flags", "amr"),
    [
        ({}, ["hwk", "user", "mfa"]),
        ({"backup_eligible": True, "backed_up": True}, ["swk", "user", "mfa"]),
    ],
)
async def test_passwordless_sign_in_answers_a_token_pair(
    app: FastAPI, client: httpx.AsyncClient, flags: dict[str, bool], amr: list[str]
) -> None:
    user = await signup_login(client)
    device = authenticator(**flags)
    created = await enrol(client, user["access_token"], device)

    signed_in = await passwordless(client, device)
    assert signed_in.status_code == 200, signed_in.text
    assert signed_in.headers["cache-control"] == "no-store"
    body = signed_in.json()
    assert body["token_type"] == "Bearer"
    assert body["user"]["id"] == user["user"]["id"]
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["amr"] == amr
    assert claims["sub"] == user["user"]["id"]
    me = await client.get("/v1/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    # The refresh token is an ordinary one of the new session.
    refreshed = await client.post("/v1/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert refreshed.status_code == 200

    listed = (await client.get("/v1/me/passkeys", headers=bearer(body["access_token"]))).json()
    (passkey,) = listed["items"]
    assert passkey["id"] == created["passkey"]["id"]
    assert passkey["last_used_at"] is not None
    # A second sign-in with the next counter value works too (the counter was stored).
    assert (await passwordless(client, device)).status_code == 200


async def test_passwordless_options_name_no_user_and_require_verification(
    client: httpx.AsyncClient,
) -> None:
    for body in ({}, None):
        answer = await client.post("/v1/auth/passkey/options", json=body)
        assert answer.status_code == 200, answer.text
        options = answer.json()
        assert options["rpId"] == RP_ID
        assert options["allowCredentials"] == []
        assert options["userVerification"] == "required"


async def test_origins_from_settings(make_settings: Any) -> None:
    rp = relying_party(
        make_settings(
            issuer="https://id.example.com",
            webauthn_rp_id="example.com",
            webauthn_origins="https://app.example.com,https://id.example.com",
        )
    )
    assert (rp.id, rp.origins) == (
        "example.com",
        ("https://app.example.com", "https://id.example.com"),
    )
    default = relying_party(make_settings(issuer="https://ID.example.com:8443/base"))
    assert (default.id, default.origins) == ("id.example.com", ("https://id.example.com:8443",))
