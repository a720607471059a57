"""Attacks on account locks and on recovery (issue 12, findings 2 and 8).

Finding 2: "forgot password" lifted an administrator's lock (the reset called an unlock
that cleared any lock). The kind of lock is stored now: a reset lifts only the automatic
(throttling) lock; an admin-locked or disabled account gets no reset mail, no token, and a
token from before the lock is refused; only an administrator's unlock clears both kinds.

Finding 8: an attacker locked the account (failures from anywhere) and used up the
per-address mail budget with five forgot requests, so the owner could neither log in nor
recover. Mail limits count per address and requesting network now (with a generous
ceiling per address across networks), and the owner's reset lifts the automatic lock.

ASVS v5.0.0-6.4.3 (password reset is secure: it bypasses no administrative control),
v5.0.0-6.3.1 (brute-force controls as documented, without locking out the real user),
v5.0.0-6.1.1 (the defences say how they avoid locking out real users).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import time_machine
from alembic import command
from sqlalchemy import text

from conftest import SettingsFactory
from helpers import (
    admin_headers,
    api_login_status,
    mails_to,
    new_email,
    serving,
    signup_login,
)
from keyturn.db.engine import create_engine
from keyturn.db.migrate import alembic_config, upgrade
from keyturn.domain import utcnow
from smtp_server import SmtpServer, extract_token

pytestmark = pytest.mark.anyio

NEW_PASSWORD = "a brand new passphrase 7"
WRONG = "not the right password 123"
ATTACKER_IP = "198.51.100.66"
OWNER_IP = "203.0.113.10"
# Few failures lock an account; the per account+IP 429 never gets in the way.
LOCK_LIMITS = {"limit_failures_per_account": 3, "limit_failures_per_account_ip": 1000}


async def no_mail_after_sentinel(
    client: httpx.AsyncClient, smtp: SmtpServer, victim: str, subject: str
) -> None:
    """Asserts ``victim`` got no mail whose subject holds ``subject``.

    A forgot request for a fresh account is queued after the victim's: once its reset
    mail arrives, the worker has handled the victim's request too (due order).
    """
    sentinel = (await signup_login(client))["email"]
    answer = await client.post("/v1/auth/password/forgot", json={"email": sentinel})
    assert answer.status_code == 202
    await mails_to(smtp, sentinel, count=2)
    await asyncio.sleep(0.3)  # one more worker round for anything queued meanwhile
    got = [m["Subject"] for m in smtp.messages_to(victim)]
    assert not [s for s in got if subject in s.lower()], got


async def reset_token(smtp: SmtpServer, email: str, count: int) -> str:
    mails = await mails_to(smtp, email, count=count)
    return extract_token(next(m for m in reversed(mails) if "reset" in m["Subject"].lower()))


async def lock_by_failures(client: httpx.AsyncClient, email: str) -> None:
    for _ in range(4):
        answer = await client.post("/v1/auth/login", json={"email": email, "password": WRONG})
        assert answer.status_code == 401


async def admin_view(
    client: httpx.AsyncClient, headers: dict[str, str], user_id: str
) -> tuple[str | None, str | None]:
    """The lock kind as REST and as GraphQL show it to an administrator."""
    rest = await client.get(f"/v1/admin/users/{user_id}", headers=headers)
    assert rest.status_code == 200, rest.text
    query = f'{{ user(id: "{user_id}") {{ lockKind }} }}'
    graph = await client.post("/graphql", json={"query": query}, headers=headers)
    assert graph.status_code == 200, graph.text
    return rest.json()["lock_kind"], graph.json()["data"]["user"]["lockKind"]


# --- finding 2: an administrator's lock survives every self-service pathway -------------


async def test_asvs_6_4_3_forgot_password_neither_mails_nor_unlocks_an_admin_locked_user(
    make_settings: SettingsFactory, smtp: SmtpServer
) -> None:
    async with serving(make_settings()) as from_ip:
        application = from_ip.app
        client = from_ip(OWNER_IP)
        headers = await admin_headers(application, client)
        victim = await signup_login(client)
        locked = await client.post(f"/v1/admin/users/{victim['user']['id']}/lock", headers=headers)
        assert locked.status_code == 204
        assert await admin_view(client, headers, victim["user"]["id"]) == (
            "administrative",
            "administrative",
        )

        unknown = await client.post("/v1/auth/password/forgot", json={"email": new_email()})
        answer = await client.post("/v1/auth/password/forgot", json={"email": victim["email"]})
        # Enumeration-safe: the same answer as for an address nobody owns.
        assert (answer.status_code, answer.content) == (unknown.status_code, unknown.content)
        assert answer.status_code == 202
        await no_mail_after_sentinel(client, smtp, victim["email"], "reset")
        assert await api_login_status(client, victim["email"]) == 401


async def test_asvs_6_4_3_a_reset_token_from_before_the_admin_lock_is_refused(
    make_settings: SettingsFactory, smtp: SmtpServer
) -> None:
    async with serving(make_settings()) as from_ip:
        application = from_ip.app
        client = from_ip(OWNER_IP)
        headers = await admin_headers(application, client)
        victim = await signup_login(client)
        await client.post("/v1/auth/password/forgot", json={"email": victim["email"]})
        token = await reset_token(smtp, victim["email"], count=2)
        await client.post(f"/v1/admin/users/{victim['user']['id']}/lock", headers=headers)

        reset = await client.post(
            "/v1/auth/password/reset", json={"token": token, "password": NEW_PASSWORD}
        )
        assert reset.status_code == 400, reset.text
        assert reset.json()["code"] == "token_invalid"
        assert await api_login_status(client, victim["email"], NEW_PASSWORD) == 401
        view = await admin_view(client, headers, victim["user"]["id"])
        assert view == ("administrative", "administrative")

        # Lifted by an administrator, the old password works: the reset changed nothing.
        await client.post(f"/v1/admin/users/{victim['user']['id']}/unlock", headers=headers)
        assert await api_login_status(client, victim["email"]) == 200


async def test_asvs_6_4_3_disabled_and_admin_locked_users_get_no_recovery_tokens(
    make_settings: SettingsFactory, smtp: SmtpServer
) -> None:
    """Neighbours: resend verification, and the set-password link of an admin-made user."""
    async with serving(make_settings()) as from_ip:
        application = from_ip.app
        client = from_ip(OWNER_IP)
        headers = await admin_headers(application, client)
        locked = await signup_login(client)
        await client.post(f"/v1/admin/users/{locked['user']['id']}/lock", headers=headers)
        disabled = await signup_login(client)
        await client.patch(
            f"/v1/admin/users/{disabled['user']['id']}", json={"disabled": True}, headers=headers
        )
        for email in (locked["email"], disabled["email"]):
            assert await mails_to(smtp, email)  # the signup's verification mail
            before = len(smtp.messages_to(email))
            for path in ("/v1/auth/password/forgot", "/v1/auth/email/verify/resend"):
                answer = await client.post(path, json={"email": email})
                assert answer.status_code == 202
            await no_mail_after_sentinel(client, smtp, email, "reset")
            assert len(smtp.messages_to(email)) == before

        # An administrator creates a user, then disables it: its set-password link dies.
        made = new_email()
        created = await client.post("/v1/admin/users", json={"email": made}, headers=headers)
        assert created.status_code == 201, created.text
        token = extract_token((await mails_to(smtp, made))[0])
        await client.patch(
            f"/v1/admin/users/{created.json()['id']}", json={"disabled": True}, headers=headers
        )
        answer = await client.post(
            "/v1/auth/password/reset", json={"token": token, "password": NEW_PASSWORD}
        )
        assert answer.status_code == 400
        assert answer.json()["code"] == "token_invalid"


async def test_asvs_6_3_1_the_automatic_lock_expiring_does_not_end_an_admin_lock(
    make_settings: SettingsFactory, smtp: SmtpServer
) -> None:
    async with serving(make_settings(**LOCK_LIMITS)) as from_ip:
        application = from_ip.app
        client = from_ip(OWNER_IP)
        headers = await admin_headers(application, client)
        victim = await signup_login(client)
        user_id = victim["user"]["id"]
        await lock_by_failures(from_ip(ATTACKER_IP), victim["email"])
        assert await admin_view(client, headers, user_id) == ("automatic", "automatic")
        # The administrator locks an account the throttle has locked already.
        assert (await client.post(f"/v1/admin/users/{user_id}/lock", headers=headers)).is_success
        assert await admin_view(client, headers, user_id) == ("administrative", "administrative")

        with time_machine.travel(utcnow() + timedelta(days=2), tick=True):
            assert await api_login_status(client, victim["email"]) == 401
            headers = await admin_headers(application, client)  # the old token expired
            view = await admin_view(client, headers, user_id)
            assert view == ("administrative", "administrative")

        # The administrator's unlock lifts both kinds at once.
        headers = await admin_headers(application, client)
        assert (await client.post(f"/v1/admin/users/{user_id}/unlock", headers=headers)).is_success
        assert await admin_view(client, headers, user_id) == (None, None)
        assert await api_login_status(client, victim["email"]) == 200


async def test_asvs_6_4_3_a_reset_lifts_only_the_automatic_lock(
    make_settings: SettingsFactory, smtp: SmtpServer
) -> None:
    """The owner's reset ends the automatic lock but not one an admin adds meanwhile."""
    async with serving(make_settings(**LOCK_LIMITS)) as from_ip:
        application = from_ip.app
        client = from_ip(OWNER_IP)
        headers = await admin_headers(application, client)
        victim = await signup_login(client)
        user_id = victim["user"]["id"]
        await lock_by_failures(from_ip(ATTACKER_IP), victim["email"])
        await client.post("/v1/auth/password/forgot", json={"email": victim["email"]})
        token = await reset_token(smtp, victim["email"], count=3)
        await client.post(f"/v1/admin/users/{user_id}/lock", headers=headers)
        reset = await client.post(
            "/v1/auth/password/reset", json={"token": token, "password": NEW_PASSWORD}
        )
        assert reset.status_code == 400
        assert await admin_view(client, headers, user_id) == ("administrative", "administrative")


# --- finding 8: the owner keeps a way back in ------------------------------------------


async def test_asvs_6_3_1_owner_recovers_after_an_attacker_locks_and_mail_bombs(
    make_settings: SettingsFactory, smtp: SmtpServer
) -> None:
    settings = make_settings(**LOCK_LIMITS)
    async with serving(settings) as from_ip:
        owner = from_ip(OWNER_IP)
        attacker = from_ip(ATTACKER_IP)
        victim = await signup_login(owner)
        email = victim["email"]

        await lock_by_failures(attacker, email)
        assert await api_login_status(owner, email) == 401  # locked: the right password fails
        codes = [
            (await attacker.post("/v1/auth/password/forgot", json={"email": email})).status_code
            for _ in range(settings.limit_mails_per_address_per_hour + 1)
        ]
        assert codes[-1] == 429  # the attacker's network used its budget for the address
        assert codes[:-1] == [202] * settings.limit_mails_per_address_per_hour

        # The owner, from another network, still gets a reset mail ...
        asked = await owner.post("/v1/auth/password/forgot", json={"email": email})
        assert asked.status_code == 202, asked.text
        sent = 2 + settings.limit_mails_per_address_per_hour + 1  # verify, lock, 5 + 1 resets
        token = await reset_token(smtp, email, count=sent)
        # ... whose reset lifts the automatic lock.
        reset = await owner.post(
            "/v1/auth/password/reset", json={"token": token, "password": NEW_PASSWORD}
        )
        assert reset.status_code == 204, reset.text
        assert await api_login_status(owner, email, NEW_PASSWORD) == 200


async def test_asvs_6_3_1_a_ceiling_per_address_still_stops_mail_bombing_from_many_networks(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(
        limit_mails_per_address_per_hour=2, limit_mails_per_address_all_networks_per_hour=5
    )
    async with serving(settings) as from_ip:
        address = new_email()
        codes = []
        for network in range(4):
            client = from_ip(f"192.0.2.{network + 1}")
            for _ in range(2):
                answer = await client.post("/v1/auth/password/forgot", json={"email": address})
                codes.append(answer.status_code)
        assert codes == [202] * 5 + [429] * 3
        assert answer.headers["ratelimit-limit"] == "5"


def _downgrade_sync(connection: object, url: str, revision: str) -> None:
    config = alembic_config(url)
    config.attributes["connection"] = connection
    command.downgrade(config, revision)


async def test_asvs_6_4_3_migration_0011_classifies_existing_locks(
    backend: str, private_database_url: str
) -> None:
    """Locks written before 0011: ending within a day is automatic, 100 years is an admin's."""
    url = private_database_url
    engine = create_engine(url)
    now = datetime.now(UTC)
    ends = {
        "auto": now + timedelta(minutes=15),
        "admin": now + timedelta(days=36500),
        "expired": now - timedelta(hours=1),
        "never": None,
    }
    ids = {name: uuid.uuid4() for name in ends}
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_downgrade_sync, url, "0010")
        async with engine.begin() as connection:
            for name, until in ends.items():
                stored = (
                    until if backend == "postgres" or until is None else until.replace(tzinfo=None)
                )
                at = now if backend == "postgres" else now.replace(tzinfo=None)
                await connection.execute(
                    text(
                        "INSERT INTO users (id, email, email_verified, name, password_hash,"
                        " disabled, created_at, updated_at, locked_until, lock_count) VALUES"
                        " (:id, :email, false, NULL, NULL, false, :at, :at, :until, 1)"
                    ),
                    {
                        "id": ids[name] if backend == "postgres" else ids[name].hex,
                        "email": new_email(),
                        "at": at,
                        "until": stored,
                    },
                )
        await upgrade(url)
        async with engine.connect() as connection:
            rows = await connection.execute(text("SELECT id, lock_kind FROM users"))
            kinds = {uuid.UUID(str(row[0])): row[1] for row in rows}
        assert {name: kinds[ids[name]] for name in ends} == {
            "auto": "automatic",
            "admin": "administrative",
            "expired": "automatic",
            "never": None,
        }
    finally:
        await engine.dispose()
