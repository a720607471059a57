"""The account-takeover chain of issue 12 finding 1, end to end (ASVS v5.0.0 7.4.3, 7.5.1).

A real ``keyturn serve`` process mails through a real SMTP server (aiosmtpd): the attacker
signs in with a phished password, keeps an API key and an email-change token; the owner
recovers with forgot-password and the link from the mail. Afterwards nothing the attacker
planted works, and the owner's notice lists what was revoked.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from email.message import EmailMessage

import httpx
import pytest

from e2e.processes import LOW_ARGON2, Server
from helpers import PASSWORD, TEST_SECRET, bearer, new_email
from smtp_server import SmtpServer, extract_token, text_body

pytestmark = pytest.mark.slow

NEW_PASSWORD = "the owner's new passphrase 5"
MAIL_DEADLINE = 30.0  # a bound for a busy machine, not an expectation


def _mail(smtp: SmtpServer, address: str, subject: str) -> EmailMessage:
    """The newest mail to ``address`` whose subject contains ``subject`` (bounded wait)."""
    deadline = time.monotonic() + MAIL_DEADLINE
    while True:
        found = [
            message for message in smtp.messages_to(address) if subject in str(message["Subject"])
        ]
        if found:
            return found[-1]
        assert time.monotonic() < deadline, f"no mail {subject!r} to {address}"
        time.sleep(0.02)


@pytest.fixture
def server(
    start_server: Callable[..., Server],
    smtp: SmtpServer,
    backend: str,
    redis_prefix: str,
    request: pytest.FixtureRequest,
) -> Server:
    env = {"KEYTURN_SMTP_URL": smtp.url, "KEYTURN_SECRET_KEY": TEST_SECRET, **LOW_ARGON2}
    if backend == "postgres":
        env["KEYTURN_DATABASE_URL"] = request.getfixturevalue("postgres_url")
        env["KEYTURN_REDIS_URL"] = os.environ["KEYTURN_TEST_REDIS_URL"]
        env["KEYTURN_REDIS_PREFIX"] = redis_prefix
    return start_server(env)


def _login(http: httpx.Client, email: str, password: str) -> httpx.Response:
    return http.post("/v1/auth/login", json={"email": email, "password": password})


def test_asvs_7_4_3_owner_reset_ends_the_attackers_key_and_email_change(
    server: Server, smtp: SmtpServer
) -> None:
    owner_email = new_email()
    attacker_box = new_email()
    with server.client() as http:
        signup = http.post("/v1/auth/signup", json={"email": owner_email, "password": PASSWORD})
        assert signup.status_code == 202, signup.text

        # The attacker: phished password -> session -> API key -> email change to his box.
        attacker = _login(http, owner_email, PASSWORD)
        assert attacker.status_code == 200, attacker.text
        session = bearer(attacker.json()["access_token"])
        created = http.post(
            "/v1/me/api-keys",
            json={"name": "backup", "scopes": ["me:read", "me:write"]},
            headers=session,
        )
        assert created.status_code == 201, created.text
        key = created.json()["key"]
        change = http.post(
            "/v1/me/email",
            json={"password": PASSWORD, "new_email": attacker_box},
            headers=session,
        )
        assert change.status_code == 202, change.text
        change_token = extract_token(_mail(smtp, attacker_box, "Confirm your new email"))
        warning = text_body(_mail(smtp, owner_email, "change of your email address"))

        # The owner: forgot-password, the mailed link, a new password.
        forgot = http.post("/v1/auth/password/forgot", json={"email": owner_email})
        assert forgot.status_code == 202
        reset_token = extract_token(_mail(smtp, owner_email, "Reset your password"))
        reset = http.post(
            "/v1/auth/password/reset", json={"token": reset_token, "password": NEW_PASSWORD}
        )
        assert reset.status_code == 204, reset.text

        # Everything the attacker kept is dead.
        assert http.get("/v1/me", headers=bearer(key)).status_code == 401
        with_key = http.post(
            "/v1/me/email/confirm", json={"token": change_token}, headers=bearer(key)
        )
        assert with_key.status_code == 401, with_key.text
        with_session = http.post(
            "/v1/me/email/confirm", json={"token": change_token}, headers=session
        )
        assert with_session.status_code == 401, with_session.text
        refresh = http.post(
            "/v1/auth/refresh", json={"refresh_token": attacker.json()["refresh_token"]}
        )
        assert refresh.status_code == 401
        assert _login(http, owner_email, PASSWORD).status_code == 401
        assert _login(http, attacker_box, PASSWORD).status_code == 401

        # The owner keeps the account and the address; the change token stays dead for him too.
        owner = _login(http, owner_email, NEW_PASSWORD)
        assert owner.status_code == 200, owner.text
        assert owner.json()["user"]["email"] == owner_email
        late = http.post(
            "/v1/me/email/confirm",
            json={"token": change_token},
            headers=bearer(owner.json()["access_token"]),
        )
        assert late.status_code == 400
        assert late.json()["code"] == "token_used"
        notice = text_body(_mail(smtp, owner_email, "password was changed"))
        assert "API keys revoked: 1" in notice
        assert "Pending email changes cancelled: 1" in notice
        assert key not in notice
        assert change_token not in notice
        # The owner was warned at the old address, with the way to recover.
        assert "/ui/forgot" in warning
    server.assert_stopped_cleanly()
