"""Every refusal of a passkey ceremony (issue 15, W3C WebAuthn Level 3 section 7.2): a
forged origin or RP ID, a stale, reused or foreign challenge, an unregistered or foreign
credential, a counter going backwards (a possible clone, audited), a missing user
verification; counted like password failures and audited. Plus the management refusals:
another user's passkey, a stale sign-in, an API key, junk bodies."""

from __future__ import annotations

import secrets
import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import time_machine
from fastapi import FastAPI

from helpers import admin_headers, bearer, lifespan, running_app, signup_login
from keyturn.app import create_app
from keyturn.config import Settings
from keyturn.domain import ClientInfo
from keyturn.errors import AuthenticationFailed, WebAuthnRejected
from keyturn.infra.ceremonies import RedisCeremonyStore
from keyturn.services.mfa import PASSWORDLESS, SECOND_FACTOR, PasskeyService
from passkey_helpers import ISSUER, authenticator, creation_options, enrol, passwordless
from webauthn_authenticator import Authenticator, b64url

pytestmark = pytest.mark.anyio

CLIENT = ClientInfo(ip="203.0.113.7", user_agent="tests")


@pytest.fixture
def settings(make_settings: Any) -> Settings:
    settings: Settings = make_settings(issuer=ISSUER)
    return settings


def passkeys(app: FastAPI) -> PasskeyService:
    service: PasskeyService = app.state.services.mfa.passkeys
    return service


async def enrolled(
    client: httpx.AsyncClient, **flags: bool
) -> tuple[dict[str, Any], Authenticator]:
    user = await signup_login(client)
    device = authenticator(**flags)
    await enrol(client, user["access_token"], device)
    return user, device


async def second_step(
    app: FastAPI, user: dict[str, Any], device: Authenticator, binding: str = "mfa-1", **forge: Any
) -> Any:
    """A second step's options and the device's (possibly forged) answer, verified."""
    user_id = uuid.UUID(user["user"]["id"])
    options = await passkeys(app).request_options(
        purpose=SECOND_FACTOR, user_id=user_id, binding=binding
    )
    assertion = device.authenticate(options, **forge)
    return await passkeys(app).verify_assertion(
        assertion, purpose=SECOND_FACTOR, user_id=user_id, binding=binding, client=CLIENT
    )


async def audit_events(
    app: FastAPI, client: httpx.AsyncClient, event_type: str, user_id: str | None = None
) -> list[dict[str, Any]]:
    params = {"type": event_type} | ({"user_id": user_id} if user_id else {})
    answer = await client.get(
        "/v1/admin/audit-events", params=params, headers=await admin_headers(app, client)
    )
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


async def test_a_genuine_second_step_passes(app: FastAPI, client: httpx.AsyncClient) -> None:
    user, device = await enrolled(client)
    user_id = uuid.UUID(user["user"]["id"])
    options = await passkeys(app).request_options(
        purpose=SECOND_FACTOR, user_id=user_id, binding="mfa-1"
    )
    assert [c["id"] for c in options["allowCredentials"]] == [b64url(device.credential.id)]
    assert options["userVerification"] == "preferred"
    use = await passkeys(app).verify_assertion(
        device.authenticate(options),
        purpose=SECOND_FACTOR,
        user_id=user_id,
        binding="mfa-1",
        client=CLIENT,
    )
    assert (use.user_id, use.amr, use.user_verified) == (user_id, ("hwk", "user"), True)
    # Verification is "preferred" for a second factor: a presence-only key still passes.
    use = await second_step(app, user, device, uv=False)
    assert use.user_verified is False


@pytest.mark.parametrize(
    ("forge", "check", "detail"),
    [
        ({"origin": "https://evil.example"}, "origin", "origin is not allowed"),
        ({"origin": "http://localhost:8001"}, "origin", "origin is not allowed"),
        ({"rp_id": "evil.example"}, "rp_id", "RP ID hash"),
        ({"challenge": b64url(secrets.token_bytes(32))}, "challenge", "unknown, expired"),
        ({"up": False}, "user_presence", "user presence"),
        ({"user_handle": uuid.uuid4().bytes}, "user_handle", "user handle"),
    ],
)
async def test_forged_second_steps_are_refused_counted_and_audited(
    app: FastAPI, client: httpx.AsyncClient, forge: dict[str, Any], check: str, detail: str
) -> None:
    user, device = await enrolled(client)
    with pytest.raises(WebAuthnRejected, match=detail):
        await second_step(app, user, device, **forge)
    (event,) = await audit_events(app, client, "passkey.assertion_failed", user["user"]["id"])
    assert event["data"] == {"check": check, "purpose": SECOND_FACTOR, "factor": "passkey"}
    assert event["ip"] == CLIENT.ip
    # The refused answer spent nothing: the genuine one still passes.
    await second_step(app, user, device)


async def test_a_challenge_is_good_once(app: FastAPI, client: httpx.AsyncClient) -> None:
    user, device = await enrolled(client)
    user_id = uuid.UUID(user["user"]["id"])
    options = await passkeys(app).request_options(
        purpose=SECOND_FACTOR, user_id=user_id, binding="b"
    )
    assertion = device.authenticate(options)
    service = passkeys(app)
    await service.verify_assertion(
        assertion, purpose=SECOND_FACTOR, user_id=user_id, binding="b", client=CLIENT
    )
    replayed = device.authenticate(options)  # a fresh signature over the used challenge
    for answer in (assertion, replayed):
        with pytest.raises(WebAuthnRejected, match="already used"):
            await service.verify_assertion(
                answer, purpose=SECOND_FACTOR, user_id=user_id, binding="b", client=CLIENT
            )


@pytest.mark.parametrize(
    ("purpose", "user", "binding"),
    [
        (SECOND_FACTOR, "same", "another-mfa-token"),
        (SECOND_FACTOR, "other", "mfa-1"),
        (PASSWORDLESS, None, None),
    ],
)
async def test_a_challenge_serves_only_its_own_ceremony(
    app: FastAPI, client: httpx.AsyncClient, purpose: str, user: str | None, binding: str | None
) -> None:
    owner, device = await enrolled(client)
    owner_id = uuid.UUID(owner["user"]["id"])
    other_id = uuid.UUID((await signup_login(client))["user"]["id"])
    options = await passkeys(app).request_options(
        purpose=SECOND_FACTOR, user_id=owner_id, binding="mfa-1"
    )
    expected: type[Exception] = (
        WebAuthnRejected if purpose == SECOND_FACTOR else AuthenticationFailed
    )
    with pytest.raises(expected):
        await passkeys(app).verify_assertion(
            device.authenticate(options),
            purpose=purpose,
            user_id={"same": owner_id, "other": other_id, None: None}[user],
            binding=binding,
            client=CLIENT,
        )
    events = await audit_events(app, client, "passkey.assertion_failed")
    assert {"check": "challenge", "purpose": purpose, "factor": "passkey"} in [
        e["data"] for e in events
    ]


async def test_a_credential_of_another_account_or_none_is_refused(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    user, _ = await enrolled(client)
    _, other_device = await enrolled(client)
    with pytest.raises(WebAuthnRejected, match="not registered"):
        await second_step(app, user, other_device, credential=other_device.credential)
    # Created on the device but never registered here.
    stray = authenticator()
    stray.register(await creation_options(client, user["access_token"]))
    with pytest.raises(WebAuthnRejected, match="not registered"):
        await second_step(app, user, stray, credential=stray.credential)
    events = await audit_events(app, client, "passkey.assertion_failed", user["user"]["id"])
    assert [e["data"]["check"] for e in events] == ["credential", "credential"]


async def test_a_counter_going_backwards_is_refused_and_audited(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    user, device = await enrolled(client)
    await second_step(app, user, device, counter=5)
    for counter in (5, 3):
        with pytest.raises(WebAuthnRejected, match="counter went backwards"):
            await second_step(app, user, device, counter=counter)
    events = await audit_events(app, client, "passkey.counter_regressed", user["user"]["id"])
    assert [e["data"]["received"] for e in events] == [3, 5]
    assert {e["data"]["stored"] for e in events} == {5}
    failed = await audit_events(app, client, "passkey.assertion_failed", user["user"]["id"])
    assert [e["data"]["check"] for e in failed] == ["counter", "counter"]
    # The clone's answers moved nothing: the genuine device goes on from 5.
    await second_step(app, user, device, counter=6)


async def test_authenticators_without_a_counter_pass(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    user, device = await enrolled(client, counting=False, backup_eligible=True)
    for _ in range(2):
        use = await second_step(app, user, device)
        assert use.amr == ("swk", "user")


async def test_verification_is_required_when_the_policy_says_so(make_settings: Any) -> None:
    app = create_app(make_settings(issuer=ISSUER, webauthn_user_verification="required"))
    async with (
        lifespan(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as http,
    ):
        user = await signup_login(http)
        options = await creation_options(http, user["access_token"])
        assert options["authenticatorSelection"]["userVerification"] == "required"
        device = authenticator()
        refused = await http.post(
            "/v1/me/passkeys",
            json={"credential": device.register(options, uv=False)},
            headers=bearer(user["access_token"]),
        )
        assert refused.status_code == 400
        assert "did not verify the user" in refused.json()["detail"]
        await enrol(http, user["access_token"], device)
        with pytest.raises(WebAuthnRejected, match="did not verify the user"):
            await second_step(app, user, device, uv=False)


async def test_passwordless_refusals_all_look_alike(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    user, device = await enrolled(client)
    stray = authenticator()
    stray.register(await creation_options(client, user["access_token"]))
    refusals = [
        await passwordless(client, device, origin="https://evil.example"),
        await passwordless(client, device, rp_id="evil.example"),
        await passwordless(client, device, uv=False),
        await passwordless(client, device, challenge=b64url(secrets.token_bytes(32))),
        await passwordless(client, stray),
    ]
    bodies = [r.text for r in refusals]
    assert refusals[0].status_code == 401
    assert refusals[0].json()["code"] == "invalid_credentials"
    assert set(bodies) == {bodies[0]}  # the same answer whichever check failed
    events = await audit_events(app, client, "passkey.assertion_failed")
    checks = {e["data"]["check"] for e in events if e["data"]["purpose"] == PASSWORDLESS}
    assert {"origin", "rp_id", "user_verification", "challenge", "credential"} <= checks
    # The owner's failures carry the owner; the stray credential names nobody.
    mine = await audit_events(app, client, "passkey.assertion_failed", user["user"]["id"])
    assert len(mine) == 4
    # A used challenge is refused the same way.
    options = (await client.post("/v1/auth/passkey/options", json={})).json()
    answer = device.authenticate(options)
    assert (await client.post("/v1/auth/passkey", json={"credential": answer})).status_code == 200
    again = await client.post("/v1/auth/passkey", json={"credential": answer})
    assert (again.status_code, again.json()["code"]) == (401, "invalid_credentials")


async def test_passwordless_failures_are_throttled(make_settings: Any) -> None:
    async with running_app(make_settings(issuer=ISSUER, limit_failures_per_account_ip=3)) as http:
        stray = authenticator()
        user = await signup_login(http)
        stray.register(await creation_options(http, user["access_token"]))
        statuses = [(await passwordless(http, stray)).status_code for _ in range(4)]
        assert statuses == [401, 401, 401, 429]


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
    monkeypatch.setattr(passkeys(app), "_ceremonies", dead)
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
