"""Attacks on the login's second step (issue 15), named for the ASVS 5.0 requirement.

V6.3.1 (brute force of every factor is limited), V6.3.3 (the second step cannot be skipped),
V6.3.8 (no enumeration of who has a factor), V6.4.3 (a reset bypasses no factor), V6.5.1 (a
one-time code works once), V6.6.3 (the second-step challenge is single use and bound to its
login), V7.5.1 (factor changes need a recent sign-in), V10.3.4 (a step-up asked with
acr_values is never completed silently). Every attack runs over HTTP against the real app;
pyotp is the authenticator app. The passkey attacks are in tests/integration/mfa.
"""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
import time_machine
from fastapi import FastAPI

from conftest import SettingsFactory
from helpers import (
    PASSWORD,
    bearer,
    lifespan,
    mail_titled,
    signup_login,
    ui_login,
)
from keyturn.app import create_app
from keyturn.domain import utcnow
from mfa_helpers import (
    enrol_totp,
    enrolled_account,
    first_step,
    second_step,
    totp_code,
    unverified_claims,
)
from oauth_helpers import auth_params, code_for, query_of, redeem, register, signed_in
from smtp_server import SmtpServer, extract_token

pytestmark = pytest.mark.anyio


async def test_asvs_6_5_1_a_totp_code_is_accepted_once(client: httpx.AsyncClient) -> None:
    email, secret, _ = await enrolled_account(client)
    code = totp_code(secret, steps_ahead=1)
    first = await second_step(
        client, (await first_step(client, email))["mfa_token"], "totp", code=code
    )
    assert first.status_code == 200, first.text
    replay = await second_step(
        client, (await first_step(client, email))["mfa_token"], "totp", code=code
    )
    assert replay.status_code == 401
    assert replay.json()["code"] == "mfa_code_invalid"


async def test_asvs_6_5_1_a_recovery_code_works_once(client: httpx.AsyncClient) -> None:
    email, _, codes = await enrolled_account(client)
    # Typed from paper: case, spaces and dashes do not matter.
    typed = codes[3].upper().replace("-", " ")
    used = await second_step(
        client, (await first_step(client, email))["mfa_token"], "recovery_code", code=typed
    )
    assert used.status_code == 200, used.text
    assert unverified_claims(used.json()["access_token"])["amr"] == ["pwd", "otp", "mfa"]
    again = await second_step(
        client, (await first_step(client, email))["mfa_token"], "recovery_code", code=codes[3]
    )
    assert again.status_code == 401
    assert again.json()["code"] == "mfa_code_invalid"
    status = await client.get("/v1/me/mfa", headers=bearer(used.json()["access_token"]))
    assert status.json()["recovery_codes_left"] == 9


async def test_asvs_6_6_3_an_mfa_token_is_single_use(client: httpx.AsyncClient) -> None:
    email, secret, _ = await enrolled_account(client)
    token = (await first_step(client, email))["mfa_token"]
    done = await second_step(client, token, "totp", code=totp_code(secret, steps_ahead=1))
    assert done.status_code == 200
    reused = await second_step(client, token, "totp", code=totp_code(secret, steps_ahead=-1))
    assert reused.status_code == 401
    assert reused.json()["code"] == "mfa_token_invalid"


async def test_asvs_6_3_1_an_mfa_token_dies_after_five_wrong_codes(
    client: httpx.AsyncClient,
) -> None:
    email, secret, _ = await enrolled_account(client)
    token = (await first_step(client, email))["mfa_token"]
    right = totp_code(secret, steps_ahead=1)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    for _ in range(5):
        answer = await second_step(client, token, "totp", code=wrong)
        assert answer.json()["code"] == "mfa_code_invalid"
    late = await second_step(client, token, "totp", code=right)
    assert late.status_code == 401
    assert late.json()["code"] == "mfa_token_invalid"


async def test_asvs_6_3_1_totp_guessing_hits_the_account_limit(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(limit_failures_per_account_ip=4)
    application = create_app(settings)
    async with lifespan(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            email, secret, _ = await enrolled_account(client)
            statuses = []
            for _ in range(3):
                login = await client.post(
                    "/v1/auth/login", json={"email": email, "password": PASSWORD}
                )
                if login.status_code != 200:
                    statuses.append(login.status_code)
                    break
                token = login.json()["mfa_token"]
                for _ in range(2):
                    wrong = f"{(int(totp_code(secret)) + 7) % 1_000_000:06d}"
                    answer = await second_step(client, token, "totp", code=wrong)
                    statuses.append(answer.status_code)
    # Four wrong codes for this account from this address, then 429 (the password step
    # too): a fresh mfa_token per password does not reset the count, so 10^6 codes are out
    # of reach.
    assert statuses[:4] == [401] * 4
    assert 429 in statuses[4:]


async def test_asvs_6_6_3_the_mfa_token_of_one_user_with_the_code_of_another(
    client: httpx.AsyncClient,
) -> None:
    email_a, _, _ = await enrolled_account(client)
    _, secret_b, _ = await enrolled_account(client)
    token_a = (await first_step(client, email_a))["mfa_token"]
    answer = await second_step(client, token_a, "totp", code=totp_code(secret_b, steps_ahead=1))
    assert answer.status_code == 401
    assert answer.json()["code"] == "mfa_code_invalid"


async def test_asvs_6_3_3_the_mfa_token_is_no_bearer_token(client: httpx.AsyncClient) -> None:
    email, _, _ = await enrolled_account(client)
    token = (await first_step(client, email))["mfa_token"]
    assert (await client.get("/v1/me", headers=bearer(token))).status_code == 401
    assert (await client.get("/v1/me/sessions", headers=bearer(token))).status_code == 401
    refreshed = await client.post("/v1/auth/refresh", json={"refresh_token": token})
    assert refreshed.status_code == 401
    assert (await client.post("/v1/auth/logout", headers=bearer(token))).status_code == 401
    oauth = await client.post(
        "/oauth2/token", data={"grant_type": "refresh_token", "refresh_token": token}
    )
    assert oauth.status_code in (400, 401)
    assert "access_token" not in oauth.json()


async def test_asvs_6_4_3_a_password_reset_neither_signs_in_nor_removes_the_factor(
    client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    email, secret, _ = await enrolled_account(client)
    stale = (await first_step(client, email))["mfa_token"]
    asked = await client.post("/v1/auth/password/forgot", json={"email": email})
    assert asked.status_code == 202
    token = extract_token(await mail_titled(smtp, email, "Reset"))
    new_password = "another long passphrase 42"
    reset = await client.post(
        "/v1/auth/password/reset", json={"token": token, "password": new_password}
    )
    # 204: no body, so no token of any kind.
    assert reset.status_code == 204, reset.text
    assert reset.content == b""
    # The reset ended every session: a second step begun before it cannot finish.
    late = await second_step(client, stale, "totp", code=totp_code(secret, steps_ahead=1))
    assert late.status_code == 401
    assert late.json()["code"] == "mfa_token_invalid"
    # The new password alone does not sign in: the factor is still there.
    step = await first_step(client, email, new_password)
    assert step["methods"] == ["totp", "recovery_code"]


async def test_asvs_6_3_8_a_wrong_password_answers_the_same_with_or_without_a_factor(
    client: httpx.AsyncClient,
) -> None:
    with_factor, _, _ = await enrolled_account(client)
    without = (await signup_login(client))["email"]
    answers = [
        await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD + "x"})
        for email in (with_factor, without)
    ]
    assert [a.status_code for a in answers] == [401, 401]
    assert answers[0].json() == answers[1].json()


async def test_asvs_10_3_4_prompt_none_never_steps_up_silently(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    oauth_client = await register(app, client, require_pkce=False)
    # A browser session signed in with the password alone, before the factor existed.
    email = await signed_in(client)
    await code_for(client, oauth_client)  # consent stored
    api = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    await enrol_totp(client, api.json()["access_token"])

    silent = await client.get(
        "/oauth2/authorize", params=auth_params(oauth_client, prompt="none", acr_values="2")
    )
    assert silent.status_code == 303
    assert query_of(silent.headers["location"])["error"] == "login_required"
    # Without prompt=none the user is sent to sign in again (and on to the second step).
    asked = await client.get("/oauth2/authorize", params=auth_params(oauth_client, acr_values="2"))
    assert asked.headers["location"].startswith("/ui/login?")
    # Asking for one factor only is met by the session as it is (acr "1").
    code, _ = await code_for(client, oauth_client, acr_values="1")
    tokens = await redeem(client, oauth_client, code)
    assert tokens.status_code == 200, tokens.text
    assert unverified_claims(tokens.json()["id_token"])["acr"] == "1"


async def test_asvs_7_5_1_a_stolen_access_token_without_a_recent_sign_in_changes_no_factor(
    client: httpx.AsyncClient,
) -> None:
    signed = await signup_login(client)
    await enrol_totp(client, signed["access_token"])
    with time_machine.travel(utcnow() + timedelta(seconds=301), tick=True):
        # A fresh access token of the same (old) session: refresh keeps the sign-in time.
        refreshed = await client.post(
            "/v1/auth/refresh", json={"refresh_token": signed["refresh_token"]}
        )
        assert refreshed.status_code == 200, refreshed.text
        headers = bearer(refreshed.json()["access_token"])
        for method, path in (
            ("DELETE", "/v1/me/mfa/totp"),
            ("POST", "/v1/me/mfa/recovery-codes"),
            ("POST", "/v1/me/passkeys/options"),
        ):
            answer = await client.request(method, path, headers=headers)
            assert answer.status_code == 403, (path, answer.text)
            assert answer.json()["code"] == "reauthentication_required"
        key = await client.post("/v1/me/api-keys", json={"name": "late"}, headers=headers)
        assert key.status_code == 403
        assert key.json()["code"] == "reauthentication_required"


async def test_asvs_6_3_3_the_password_page_alone_opens_no_browser_session(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    oauth_client = await register(app, client, require_pkce=False)
    email, _, _ = await enrolled_account(client)
    first = await ui_login(client, email)
    # The right password leads to the second step, not to a session.
    assert first.status_code == 303
    assert first.headers["location"].startswith("/ui/mfa")
    assert (await client.get("/ui/account/security")).headers["location"].startswith("/ui/login")
    authorize = await client.get("/oauth2/authorize", params=auth_params(oauth_client))
    assert authorize.status_code == 303
    assert authorize.headers["location"].startswith("/ui/login?")
    assert "code" not in query_of(authorize.headers["location"])
