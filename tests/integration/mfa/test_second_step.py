"""The login's second step through the JSON API (issue 15): TOTP and recovery codes.

pyotp plays the authenticator app; passkeys as a second step are in the passkey tests.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from conftest import SettingsFactory
from helpers import (
    admin_headers,
    bearer,
    grant_role,
    lifespan,
    signup_login,
)
from keyturn.app import create_app
from mfa_helpers import enrolled_account, first_step, second_step, totp_code, unverified_claims

pytestmark = pytest.mark.anyio


async def test_a_password_alone_no_longer_signs_in_once_totp_is_set_up(
    client: httpx.AsyncClient,
) -> None:
    email, secret, codes = await enrolled_account(client)
    assert len(codes) == 10
    assert len(set(codes)) == 10
    step = await first_step(client, email)
    assert step["methods"] == ["totp", "recovery_code"]
    assert step["enrolment_required"] is False
    assert 0 < step["expires_in"] <= 300

    # The confirmation used the current step: the next one is what the app shows next.
    done = await second_step(
        client, step["mfa_token"], "totp", code=totp_code(secret, steps_ahead=1)
    )
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["recovery_codes"] is None
    claims = unverified_claims(body["access_token"])
    assert claims["amr"] == ["pwd", "otp", "mfa"]
    assert claims["acr"] == "2"
    me = await client.get("/v1/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["email"] == email

    # Refresh does not ask again, and keeps what the sign-in proved.
    refreshed = await client.post("/v1/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    assert unverified_claims(refreshed.json()["access_token"])["amr"] == ["pwd", "otp", "mfa"]


async def test_a_role_that_demands_mfa_enrols_during_the_login(
    make_settings: SettingsFactory,
) -> None:
    role = f"auditor-{uuid.uuid4().hex[:8]}"
    application = create_app(make_settings(mfa_required_roles=[role]))
    async with lifespan(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            admin = await admin_headers(application, client)
            answer = await client.post(
                "/v1/admin/roles", json={"name": role, "permissions": ["audit:read"]}, headers=admin
            )
            assert answer.status_code == 201, answer.text
            user = await signup_login(client)
            await grant_role(client, admin, user["user"]["id"], role)

            step = await first_step(client, user["email"])
            assert step["enrolment_required"] is True
            assert step["methods"] == ["totp"]
            # Nothing to confirm before the enrolment starts.
            early = await second_step(client, step["mfa_token"], "totp", code="123456")
            assert early.status_code == 409
            assert early.json()["code"] == "mfa_not_enrolled"
            started = await client.post("/v1/auth/mfa/totp", json={"mfa_token": step["mfa_token"]})
            assert started.status_code == 200, started.text
            assert started.json()["qr_svg"].startswith("<svg")
            secret = started.json()["secret"]
            assert started.json()["otpauth_uri"].startswith("otpauth://totp/")
            done = await second_step(client, step["mfa_token"], "totp", code=totp_code(secret))
            assert done.status_code == 200, done.text
            assert len(done.json()["recovery_codes"]) == 10
            assert unverified_claims(done.json()["access_token"])["acr"] == "2"
            # From now on the ordinary second step.
            assert (await first_step(client, user["email"]))["methods"] == ["totp", "recovery_code"]
