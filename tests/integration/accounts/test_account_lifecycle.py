"""Email verification, password reset, email change, deletion and export, end to end.

Every mail goes through the outbox to a real SMTP server (aiosmtpd); the tests read the
delivered messages to finish each flow over HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import time_machine

from helpers import PASSWORD, bearer, mails_to, new_email, running_app, signup_login
from keyturn.config import Settings
from smtp_server import SmtpServer, extract_token, text_body

pytestmark = pytest.mark.anyio

NEW_PASSWORD = "a brand new passphrase 7"


async def test_signup_mails_a_token_that_verifies_the_address(
    client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    email = new_email()
    await client.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
    (mail,) = await mails_to(smtp, email)
    assert "Confirm" in mail["Subject"]
    assert mail["Message-ID"]
    token = extract_token(mail)
    assert token not in str(mail["Subject"])
    verified = await client.post("/v1/auth/email/verify", json={"token": token})
    assert verified.status_code == 204
    login = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.json()["user"]["email_verified"] is True
    again = await client.post("/v1/auth/email/verify", json={"token": token})
    assert again.status_code == 400
    assert again.json()["code"] == "token_used"


async def test_unverified_login_refused_when_required(
    make_settings: Callable[..., Settings], smtp: SmtpServer
) -> None:
    async with running_app(make_settings(require_verified_email=True)) as client:
        email = new_email()
        signup = await client.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
        assert signup.json() == {"status": "accepted", "verification_required": True}
        refused = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert refused.status_code == 403
        assert refused.json()["code"] == "email_not_verified"
        resend = await client.post("/v1/auth/email/verify/resend", json={"email": email})
        assert resend.status_code == 202
        first, second = await mails_to(smtp, email, count=2)
        # The resend replaced the first token: only the newest one works.
        stale = await client.post("/v1/auth/email/verify", json={"token": extract_token(first)})
        assert stale.json()["code"] == "token_used"
        fresh = await client.post("/v1/auth/email/verify", json={"token": extract_token(second)})
        assert fresh.status_code == 204
        allowed = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert allowed.status_code == 200


async def test_signup_for_a_taken_address_mails_its_owner(
    client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    email = new_email()
    await client.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
    await client.post("/v1/auth/signup", json={"email": email, "password": "other password 99"})
    verify, exists = await mails_to(smtp, email, count=2)
    assert "Confirm" in verify["Subject"]
    body = text_body(exists)
    assert "/ui/forgot" in body
    assert "Token:" not in body


async def test_forgot_password_is_byte_identical_for_unknown_addresses(
    client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    known = await signup_login(client)
    answers = [
        await client.post("/v1/auth/password/forgot", json={"email": address})
        for address in (known["email"], new_email())
    ]
    assert answers[0].status_code == answers[1].status_code == 202
    assert answers[0].content == answers[1].content
    assert answers[0].headers["content-type"] == answers[1].headers["content-type"]


async def test_reset_password_flow(client: httpx.AsyncClient, smtp: SmtpServer) -> None:
    tokens = await signup_login(client)
    email = tokens["email"]
    await client.post("/v1/auth/password/forgot", json={"email": email})
    reset_mail = next(
        mail for mail in await mails_to(smtp, email, count=2) if "reset" in mail["Subject"].lower()
    )
    token = extract_token(reset_mail)

    weak = await client.post("/v1/auth/password/reset", json={"token": token, "password": "short"})
    assert weak.status_code == 422
    assert weak.json()["code"] == "password_too_short"
    # The weak attempt did not burn the token.
    done = await client.post(
        "/v1/auth/password/reset", json={"token": token, "password": NEW_PASSWORD}
    )
    assert done.status_code == 204
    again = await client.post(
        "/v1/auth/password/reset", json={"token": token, "password": NEW_PASSWORD + "x"}
    )
    assert again.json()["code"] == "token_used"

    # Every session ended; the new password works, the old one does not.
    me = await client.get("/v1/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 401
    refresh = await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refresh.status_code == 401
    old = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert old.status_code == 401
    new = await client.post("/v1/auth/login", json={"email": email, "password": NEW_PASSWORD})
    assert new.status_code == 200
    notices = await mails_to(smtp, email, count=3)
    assert any(
        "password" in mail["Subject"].lower() and "changed" in mail["Subject"].lower()
        for mail in notices
    )


async def test_reset_token_dies_when_the_password_changes(
    client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    tokens = await signup_login(client)
    await client.post("/v1/auth/password/forgot", json={"email": tokens["email"]})
    mails = await mails_to(smtp, tokens["email"], count=2)
    token = extract_token(next(mail for mail in mails if "reset" in mail["Subject"].lower()))
    changed = await client.post(
        "/v1/me/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(tokens["access_token"]),
    )
    assert changed.status_code == 204
    late = await client.post(
        "/v1/auth/password/reset", json={"token": token, "password": "yet another passphrase"}
    )
    assert late.status_code == 400
    assert late.json()["code"] == "token_invalid"


async def test_twenty_concurrent_redemptions_one_wins(
    client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    tokens = await signup_login(client)
    await client.post("/v1/auth/password/forgot", json={"email": tokens["email"]})
    mails = await mails_to(smtp, tokens["email"], count=2)
    token = extract_token(next(mail for mail in mails if "reset" in mail["Subject"].lower()))
    answers = await asyncio.gather(
        *(
            client.post(
                "/v1/auth/password/reset",
                json={"token": token, "password": f"{NEW_PASSWORD} number {index}"},
            )
            for index in range(20)
        )
    )
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses.count(204) == 1, [answer.json() for answer in answers if answer.content]
    losers = [answer.json()["code"] for answer in answers if answer.status_code != 204]
    assert set(losers) <= {"token_used", "token_invalid"}
    assert len(losers) == 19


@pytest.mark.parametrize(
    ("token", "code"),
    [("not-a-token", "token_malformed"), ("A" * 43, "token_invalid")],
)
async def test_bad_tokens_have_distinct_codes(
    client: httpx.AsyncClient, token: str, code: str
) -> None:
    for path, body in (
        ("/v1/auth/email/verify", {"token": token}),
        ("/v1/auth/password/reset", {"token": token, "password": NEW_PASSWORD}),
    ):
        answer = await client.post(path, json=body)
        assert answer.status_code == 400
        assert answer.json()["code"] == code


async def test_wrong_purpose_token_is_refused(client: httpx.AsyncClient, smtp: SmtpServer) -> None:
    email = new_email()
    await client.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
    (mail,) = await mails_to(smtp, email)
    verify_token = extract_token(mail)
    answer = await client.post(
        "/v1/auth/password/reset", json={"token": verify_token, "password": NEW_PASSWORD}
    )
    assert answer.json()["code"] == "token_wrong_purpose"
    # Still usable for what it was made for.
    assert (
        await client.post("/v1/auth/email/verify", json={"token": verify_token})
    ).status_code == 204


async def test_email_change_takes_effect_on_confirmation(
    client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    tokens = await signup_login(client)
    old, new = tokens["email"], new_email()
    headers = bearer(tokens["access_token"])
    wrong = await client.post(
        "/v1/me/email", json={"password": "wrong password!", "new_email": new}, headers=headers
    )
    assert wrong.status_code == 403
    asked = await client.post(
        "/v1/me/email", json={"password": PASSWORD, "new_email": new}, headers=headers
    )
    assert asked.status_code == 202
    assert (await client.get("/v1/me", headers=headers)).json()["email"] == old
    (confirm,) = await mails_to(smtp, new)
    notices = await mails_to(smtp, old, count=2)
    assert any(new not in text_body(mail) and "***" in text_body(mail) for mail in notices)
    confirmed = await client.post(
        "/v1/me/email/confirm", json={"token": extract_token(confirm)}, headers=headers
    )
    assert confirmed.status_code == 200
    assert confirmed.json()["email"] == new
    assert confirmed.json()["email_verified"] is True
    await mails_to(smtp, old, count=3)  # "your address was changed"
    login = await client.post("/v1/auth/login", json={"email": new, "password": PASSWORD})
    assert login.status_code == 200


async def test_email_change_token_of_another_user_is_refused(
    client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    alice = await signup_login(client)
    mallory = await signup_login(client)
    target = new_email()
    await client.post(
        "/v1/me/email",
        json={"password": PASSWORD, "new_email": target},
        headers=bearer(alice["access_token"]),
    )
    (mail,) = await mails_to(smtp, target)
    stolen = await client.post(
        "/v1/me/email/confirm",
        json={"token": extract_token(mail)},
        headers=bearer(mallory["access_token"]),
    )
    assert stolen.status_code == 400
    assert stolen.json()["code"] == "token_invalid"


async def test_delete_account_ends_everything(client: httpx.AsyncClient, smtp: SmtpServer) -> None:
    tokens = await signup_login(client)
    headers = bearer(tokens["access_token"])
    refused = await client.request(
        "DELETE", "/v1/me", json={"password": "wrong password!"}, headers=headers
    )
    assert refused.status_code == 403
    created = await client.post(
        "/v1/me/api-keys", json={"name": "export me", "scopes": ["me:read"]}, headers=headers
    )
    assert created.status_code == 201
    export = await client.get("/v1/me/export", headers=headers)
    assert export.status_code == 200
    data = export.json()
    assert data["user"]["email"] == tokens["email"]
    assert len(data["sessions"]) == 1
    # The key's record is the user's data too; its secret never leaves the create answer.
    [key] = data["api_keys"]
    assert (key["id"], key["name"], key["scopes"]) == (
        created.json()["id"],
        "export me",
        ["me:read"],
    )
    assert created.json()["key"] not in export.text
    assert {event["type"] for event in data["audit_events"]} >= {"login.succeeded"}
    gone = await client.request("DELETE", "/v1/me", json={"password": PASSWORD}, headers=headers)
    assert gone.status_code == 204
    assert (await client.get("/v1/me", headers=headers)).status_code == 401
    login = await client.post(
        "/v1/auth/login", json={"email": tokens["email"], "password": PASSWORD}
    )
    assert login.status_code == 401
    refresh = await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refresh.status_code == 401
    mails = await mails_to(smtp, tokens["email"], count=2)
    assert any("deleted" in mail["Subject"].lower() for mail in mails)
    # The address is free again.
    again = await signup_login(client, email=tokens["email"])
    assert again["user"]["id"] != tokens["user"]["id"]


async def test_mails_per_address_are_limited(
    make_settings: Callable[..., Settings], smtp: SmtpServer
) -> None:
    async with running_app(make_settings(limit_mails_per_address_per_hour=2)) as client:
        address = new_email()  # nobody owns it: the limit must not depend on that
        codes = [
            (await client.post("/v1/auth/password/forgot", json={"email": address})).status_code
            for _ in range(3)
        ]
        assert codes == [202, 202, 429]
        limited = await client.post("/v1/auth/email/verify/resend", json={"email": address})
        assert limited.status_code == 429
        assert limited.headers["content-type"] == "application/problem+json; charset=utf-8"
        assert limited.json()["code"] == "rate_limited"
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.headers["ratelimit-limit"] == "2"
        assert limited.headers["ratelimit-remaining"] == "0"


async def test_expired_token_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, smtp: SmtpServer, settings: Settings
) -> None:
    email = new_email()
    start = datetime.now(UTC)
    with time_machine.travel(start, tick=False) as traveller:
        await client.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
        (mail,) = await mails_to(smtp, email)
        traveller.shift(timedelta(seconds=settings.verify_email_ttl + 1))
        late = await client.post("/v1/auth/email/verify", json={"token": extract_token(mail)})
        assert late.status_code == 400
        assert late.json()["code"] == "token_expired"
        login = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert login.json()["user"]["email_verified"] is False
