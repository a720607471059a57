"""Account takeover through credentials that survive a credential event (issue 12, 1 and 22).

ASVS v5.0.0 7.4.3 (a password reset, change or admin reset ends every other credential:
sessions, API keys, pending one-time tokens), 7.5.1 (changing the recovery address needs a
recent password authentication in a session, never an API key), 6.3.7 (the owner is told
what was revoked and how to recover) and 6.4.3 (a reset link mailed to the old address dies
with the email change).

Every attack runs over HTTP against the real app; mails go through the outbox to the real
SMTP server and the tokens are read from the delivered messages.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import time_machine
from fastapi import FastAPI

from helpers import (
    PASSWORD,
    admin_headers,
    bearer,
    mail_titled,
    mails_to,
    new_email,
    signup_login,
    submit,
    ui_login,
)
from keyturn.config import Settings
from smtp_server import SmtpServer, extract_token, text_body

pytestmark = pytest.mark.anyio

NEW_PASSWORD = "a brand new passphrase 7"
ALL_SELF_SERVICE = ["me:read", "me:write", "sessions:read", "sessions:write"]


async def _key(client: httpx.AsyncClient, access_token: str) -> str:
    answer = await client.post(
        "/v1/me/api-keys",
        json={"name": "attacker", "scopes": ALL_SELF_SERVICE},
        headers=bearer(access_token),
    )
    assert answer.status_code == 201, answer.text
    key: str = answer.json()["key"]
    return key


async def _start_email_change(
    client: httpx.AsyncClient, smtp: SmtpServer, access_token: str, new_address: str
) -> str:
    """Asks for an email change and returns the confirmation token mailed to ``new_address``."""
    answer = await client.post(
        "/v1/me/email",
        json={"password": PASSWORD, "new_email": new_address},
        headers=bearer(access_token),
    )
    assert answer.status_code == 202, answer.text
    (mail,) = await mails_to(smtp, new_address)
    return extract_token(mail)


async def _events(
    client: httpx.AsyncClient, admin: dict[str, str], user_id: str
) -> dict[str, dict[str, Any]]:
    answer = await client.get(
        "/v1/admin/audit-events", params={"user_id": user_id, "limit": 200}, headers=admin
    )
    assert answer.status_code == 200, answer.text
    events: dict[str, dict[str, Any]] = {}
    for item in reversed(answer.json()["items"]):
        events[item["type"]] = item["data"]
    return events


async def _assert_key_dead(client: httpx.AsyncClient, key: str) -> None:
    answer = await client.get("/v1/me", headers=bearer(key))
    assert answer.status_code == 401, answer.text
    assert answer.json()["code"] == "invalid_token"


# -- finding 1: the reset, change and admin reset revoke every credential -------------


async def test_asvs_7_4_3_password_reset_revokes_api_keys_and_pending_email_change(
    app: FastAPI, client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    owner = await signup_login(client)
    # The attacker signs in with the phished password, keeps a key and a change token.
    attacker = await client.post(
        "/v1/auth/login", json={"email": owner["email"], "password": PASSWORD}
    )
    key = await _key(client, attacker.json()["access_token"])
    attacker_box = new_email()
    change_token = await _start_email_change(
        client, smtp, attacker.json()["access_token"], attacker_box
    )
    # The owner recovers with forgot-password and the mailed link.
    await client.post("/v1/auth/password/forgot", json={"email": owner["email"]})
    reset_mail = await mail_titled(smtp, owner["email"], "Reset")
    reset = await client.post(
        "/v1/auth/password/reset",
        json={"token": extract_token(reset_mail), "password": NEW_PASSWORD},
    )
    assert reset.status_code == 204, reset.text

    await _assert_key_dead(client, key)
    confirm = await client.post(
        "/v1/me/email/confirm", json={"token": change_token}, headers=bearer(key)
    )
    assert confirm.status_code == 401
    # Even the owner's own fresh session cannot use the attacker's token any more.
    relogin = await client.post(
        "/v1/auth/login", json={"email": owner["email"], "password": NEW_PASSWORD}
    )
    confirm = await client.post(
        "/v1/me/email/confirm",
        json={"token": change_token},
        headers=bearer(relogin.json()["access_token"]),
    )
    assert confirm.status_code == 400
    assert confirm.json()["code"] == "token_used"
    me = await client.get("/v1/me", headers=bearer(relogin.json()["access_token"]))
    assert me.json()["email"] == owner["email"]
    keys = await client.get("/v1/me/api-keys", headers=bearer(relogin.json()["access_token"]))
    assert keys.json()["items"] == []

    # ASVS 6.3.7: the notice says what was revoked and how to recover, and carries no secret.
    notice = text_body(await mail_titled(smtp, owner["email"], "password was changed"))
    assert "Sessions ended: 2" in notice
    assert "API keys revoked: 1" in notice
    assert "Pending email changes cancelled: 1" in notice
    assert "/ui/forgot" in notice
    assert "administrator" in notice
    assert key not in notice
    assert change_token not in notice

    # One audit event per kind of revocation, with counts and ids, never a secret.
    admin = await admin_headers(app, client)
    events = await _events(client, admin, owner["user"]["id"])
    assert events["session.revoked_all"]["count"] == 2
    assert events["session.revoked_all"]["reason"] == "password_reset"
    assert events["key.revoked_all"]["count"] == 1
    assert len(events["key.revoked_all"]["key_ids"]) == 1
    # The signup's verification link is pending too (the reset verifies the address).
    assert events["token.revoked_all"]["counts"] == {"email_change": 1, "verify_email": 1}
    assert key not in str(events)
    assert change_token not in str(events)


async def test_asvs_7_4_3_password_change_revokes_api_keys_and_pending_tokens(
    client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    user = await signup_login(client)
    token = user["access_token"]
    key = await _key(client, token)
    change_token = await _start_email_change(client, smtp, token, new_email())
    changed = await client.post(
        "/v1/me/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(token),
    )
    assert changed.status_code == 204, changed.text

    await _assert_key_dead(client, key)
    # The session that changed the password stays; the pending change does not.
    confirm = await client.post(
        "/v1/me/email/confirm", json={"token": change_token}, headers=bearer(token)
    )
    assert confirm.status_code == 400
    assert confirm.json()["code"] == "token_used"
    notice = text_body(await mail_titled(smtp, user["email"], "password was changed"))
    assert "API keys revoked: 1" in notice
    assert "Pending email changes cancelled: 1" in notice
    assert "Sessions ended: 0" in notice


async def test_asvs_7_4_3_admin_reset_revokes_api_keys_and_pending_tokens(
    app: FastAPI, client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    admin = await admin_headers(app, client)
    user = await signup_login(client)
    key = await _key(client, user["access_token"])
    change_token = await _start_email_change(client, smtp, user["access_token"], new_email())
    reset = await client.post(f"/v1/admin/users/{user['user']['id']}/reset-password", headers=admin)
    assert reset.status_code == 204, reset.text

    await _assert_key_dead(client, key)
    notice = text_body(await mail_titled(smtp, user["email"], "password was changed"))
    assert "API keys revoked: 1" in notice
    assert "Pending email changes cancelled: 1" in notice
    # The owner sets a password from the new link; the old change token stays dead.
    set_mail = await mail_titled(smtp, user["email"], "choose a password")
    set_answer = await client.post(
        "/v1/auth/password/reset",
        json={"token": extract_token(set_mail), "password": NEW_PASSWORD},
    )
    assert set_answer.status_code == 204, set_answer.text
    login = await client.post(
        "/v1/auth/login", json={"email": user["email"], "password": NEW_PASSWORD}
    )
    confirm = await client.post(
        "/v1/me/email/confirm",
        json={"token": change_token},
        headers=bearer(login.json()["access_token"]),
    )
    assert confirm.json()["code"] == "token_used"
    events = await _events(client, admin, user["user"]["id"])
    assert events["key.revoked_all"]["reason"] == "admin_password_reset"


# -- finding 1: confirming an email change needs a recent login in a session ----------


async def test_asvs_7_5_1_email_confirm_refuses_an_api_key(
    client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    user = await signup_login(client)
    key = await _key(client, user["access_token"])
    new_address = new_email()
    change_token = await _start_email_change(client, smtp, user["access_token"], new_address)
    refused = await client.post(
        "/v1/me/email/confirm", json={"token": change_token}, headers=bearer(key)
    )
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "fresh_login_required"
    # Nothing changed and the token was not burnt: the session may still confirm it.
    me = await client.get("/v1/me", headers=bearer(user["access_token"]))
    assert me.json()["email"] == user["email"]
    confirmed = await client.post(
        "/v1/me/email/confirm", json={"token": change_token}, headers=bearer(user["access_token"])
    )
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["email"] == new_address


async def test_asvs_7_5_1_email_confirm_needs_a_recent_password_login(
    client: httpx.AsyncClient, smtp: SmtpServer, settings: Settings
) -> None:
    user = await signup_login(client)
    new_address = new_email()
    start = datetime.now(UTC)
    with time_machine.travel(start, tick=False) as traveller:
        change_token = await _start_email_change(client, smtp, user["access_token"], new_address)
        traveller.shift(timedelta(seconds=settings.reauthentication_max_age + 1))
        # A refresh keeps the session's auth_time: the new access token is not "recent".
        refreshed = await client.post(
            "/v1/auth/refresh", json={"refresh_token": user["refresh_token"]}
        )
        assert refreshed.status_code == 200, refreshed.text
        stale = await client.post(
            "/v1/me/email/confirm",
            json={"token": change_token},
            headers=bearer(refreshed.json()["access_token"]),
        )
        assert stale.status_code == 403, stale.text
        assert stale.json()["code"] == "reauthentication_required"
        login = await client.post(
            "/v1/auth/login", json={"email": user["email"], "password": PASSWORD}
        )
        fresh = await client.post(
            "/v1/me/email/confirm",
            json={"token": change_token},
            headers=bearer(login.json()["access_token"]),
        )
        assert fresh.status_code == 200, fresh.text
        assert fresh.json()["email"] == new_address


async def test_asvs_7_5_1_ui_email_confirm_with_a_stale_session_asks_to_sign_in(
    client: httpx.AsyncClient, smtp: SmtpServer, settings: Settings
) -> None:
    user = await signup_login(client)
    new_address = new_email()
    start = datetime.now(UTC)
    with time_machine.travel(start, tick=False) as traveller:
        assert (await ui_login(client, user["email"])).status_code == 303
        change_token = await _start_email_change(client, smtp, user["access_token"], new_address)
        traveller.shift(timedelta(seconds=settings.reauthentication_max_age + 1))
        page = f"/ui/email/confirm?token={change_token}"
        answer = await submit(client, page, {"token": change_token})
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/ui/login?next=")
        # Nothing changed: the address is still the old one.
        login = await client.post(
            "/v1/auth/login", json={"email": user["email"], "password": PASSWORD}
        )
        assert login.json()["user"]["email"] == user["email"]
        # Signing in again makes the session recent; the same link now works.
        assert (await ui_login(client, user["email"])).status_code == 303
        done = await submit(client, page, {"token": change_token})
        assert done.status_code == 303
        assert done.headers["location"] == "/ui/email/confirm?status=done"


async def test_asvs_6_3_7_email_change_notice_says_how_to_recover(
    client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    user = await signup_login(client)
    await _start_email_change(client, smtp, user["access_token"], new_email())
    notice = text_body(await mail_titled(smtp, user["email"], "email address was requested"))
    assert "/ui/forgot" in notice
    assert "every API key" in notice
    assert "administrator" in notice


# -- finding 22: an email change voids the tokens mailed to the old address -----------


async def test_asvs_6_4_3_email_change_voids_a_reset_link_sent_to_the_old_address(
    client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    user = await signup_login(client)
    await client.post("/v1/auth/password/forgot", json={"email": user["email"]})
    old_reset = extract_token(await mail_titled(smtp, user["email"], "Reset"))
    new_address = new_email()
    change_token = await _start_email_change(client, smtp, user["access_token"], new_address)
    confirmed = await client.post(
        "/v1/me/email/confirm", json={"token": change_token}, headers=bearer(user["access_token"])
    )
    assert confirmed.status_code == 200, confirmed.text
    # Whoever holds the old mailbox cannot take the account over with the old link.
    takeover = await client.post(
        "/v1/auth/password/reset", json={"token": old_reset, "password": "attacker owns it 99"}
    )
    assert takeover.status_code == 400
    assert takeover.json()["code"] == "token_used"
    login = await client.post("/v1/auth/login", json={"email": new_address, "password": PASSWORD})
    assert login.status_code == 200


async def test_asvs_6_4_3_email_change_voids_a_verification_link_for_the_old_address(
    client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    email = new_email()
    user = await signup_login(client, email)
    # The signup mail verifies the old address; after the change it must verify nothing.
    verify_old = extract_token(await mail_titled(smtp, email, "Confirm"))
    new_address = new_email()
    change_token = await _start_email_change(client, smtp, user["access_token"], new_address)
    assert (
        await client.post(
            "/v1/me/email/confirm",
            json={"token": change_token},
            headers=bearer(user["access_token"]),
        )
    ).status_code == 200
    stale = await client.post("/v1/auth/email/verify", json={"token": verify_old})
    assert stale.status_code == 400
    assert stale.json()["code"] == "token_used"


async def test_asvs_7_4_3_set_password_link_dies_with_an_admin_reset(
    app: FastAPI, client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    """An admin-created user's first set-password link dies when an admin resets again."""
    admin = await admin_headers(app, client)
    email = new_email()
    created = await client.post("/v1/admin/users", json={"email": email}, headers=admin)
    assert created.status_code == 201, created.text
    first = extract_token(await mail_titled(smtp, email, "choose a password"))
    again = await client.post(
        f"/v1/admin/users/{created.json()['id']}/reset-password", headers=admin
    )
    assert again.status_code == 204
    refused = await client.post(
        "/v1/auth/password/reset", json={"token": first, "password": NEW_PASSWORD}
    )
    assert refused.status_code == 400
    assert refused.json()["code"] == "token_used"
    assert uuid.UUID(created.json()["id"])


# -- neighbouring pathways ------------------------------------------------------------


async def test_asvs_7_4_3_hosted_reset_page_revokes_api_keys(
    client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    """The owner who recovers through the mailed link's page (/ui/reset) gets the same."""
    user = await signup_login(client)
    key = await _key(client, user["access_token"])
    await client.post("/v1/auth/password/forgot", json={"email": user["email"]})
    token = extract_token(await mail_titled(smtp, user["email"], "Reset"))
    page = f"/ui/reset?token={token}"
    done = await submit(
        client, page, {"token": token, "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD}
    )
    assert done.status_code == 303, done.text
    await _assert_key_dead(client, key)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/admin/users/{id}/lock", None),
        ("PATCH", "/v1/admin/users/{id}", {"disabled": True}),
        ("DELETE", "/v1/admin/users/{id}", None),
    ],
)
async def test_asvs_7_4_2_admin_lock_disable_delete_refuse_api_keys_at_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    """Lock and disable keep the keys (refused while the account is locked or disabled,
    checked on every use); deletion removes them with the account."""
    admin = await admin_headers(app, client)
    user = await signup_login(client)
    key = await _key(client, user["access_token"])
    assert (await client.get("/v1/me", headers=bearer(key))).status_code == 200
    answer = await client.request(
        method, path.format(id=user["user"]["id"]), json=body, headers=admin
    )
    assert answer.status_code in (200, 204), answer.text
    await _assert_key_dead(client, key)
