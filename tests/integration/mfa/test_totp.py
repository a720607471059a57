"""TOTP end to end (issue 15): enrol and confirm through the JSON API with pyotp as the
authenticator app, the login's check (drift, replay), pending expiry, removal and the
recent sign-in rule, API keys refused, the seed sealed at rest."""

from __future__ import annotations

import asyncio
import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pyotp
import pytest
import time_machine
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from helpers import bearer, mails_to, signup_login
from keyturn.config import Settings
from keyturn.db.engine import session_factory
from keyturn.db.models import TotpFactorRow
from keyturn.security.totp import step_at
from keyturn.services.mfa import MfaFactors
from mfa_helpers import Enrol, UowFactory
from smtp_server import SmtpServer

pytestmark = pytest.mark.anyio


def _start() -> datetime:
    # Mid-step, so a few seconds of test work never cross a step boundary by accident.
    now = datetime.now(UTC).replace(microsecond=0)
    return now - timedelta(seconds=now.timestamp() % 30) + timedelta(seconds=10)


async def _status(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, object]:
    answer = await client.get("/v1/me/mfa", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body: dict[str, object] = answer.json()
    return body


async def test_enrol_and_confirm_gives_ten_recovery_codes_once(
    client: httpx.AsyncClient, enrol: Enrol, smtp: SmtpServer, settings: Settings
) -> None:
    user = await signup_login(client)
    headers = bearer(user["access_token"])
    assert await _status(client, headers) == {
        "totp": False,
        "passkeys": 0,
        "recovery_codes_left": 0,
        "methods": [],
    }
    begun = await client.post("/v1/me/mfa/totp", headers=headers)
    assert begun.status_code == 200, begun.text
    assert begun.headers["cache-control"] == "no-store"
    body = begun.json()
    parsed = pyotp.parse_uri(body["otpauth_uri"])
    assert parsed.secret == body["secret"]
    assert parsed.name == user["email"]
    assert parsed.issuer == settings.brand_name
    assert body["qr_svg"].startswith("<svg")
    assert "<?xml" not in body["qr_svg"]

    wrong = await client.post("/v1/me/mfa/totp/confirm", json={"code": "000000"}, headers=headers)
    if wrong.status_code != 200:  # 1 in 10^5: 000000 is a code of the window
        assert wrong.status_code == 401, wrong.text
        assert wrong.json()["code"] == "mfa_code_invalid"
    confirmed = await client.post(
        "/v1/me/mfa/totp/confirm",
        json={"code": pyotp.TOTP(body["secret"]).now()},
        headers=headers,
    )
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.headers["cache-control"] == "no-store"
    codes = confirmed.json()["recovery_codes"]
    assert len(codes) == 10
    assert len(set(codes)) == 10
    assert await _status(client, headers) == {
        "totp": True,
        "passkeys": 0,
        "recovery_codes_left": 10,
        "methods": ["totp", "recovery_code"],
    }
    again = await client.post("/v1/me/mfa/totp", headers=headers)
    assert again.status_code == 409
    assert again.json()["code"] == "mfa_already_enrolled"
    subjects = [m["Subject"] for m in await mails_to(smtp, user["email"], count=2)]
    assert "A second factor was added to your account" in subjects


async def test_a_wrong_code_is_counted_like_a_wrong_password(
    client: httpx.AsyncClient, uow_factory: UowFactory, settings: Settings
) -> None:
    user = await signup_login(client)
    headers = bearer(user["access_token"])
    secret = (await client.post("/v1/me/mfa/totp", headers=headers)).json()["secret"]
    right = pyotp.TOTP(secret).now()
    # Half a million away: never a code of the same window by accident.
    wrong = f"{(int(right) + 500_000) % 1_000_000:06d}"
    limit = settings.limit_failures_per_account_ip
    for _ in range(limit):
        answer = await client.post("/v1/me/mfa/totp/confirm", json={"code": wrong}, headers=headers)
        assert answer.status_code == 401, answer.text
    # The same per account+IP budget as passwords: the right code now waits too.
    blocked = await client.post("/v1/me/mfa/totp/confirm", json={"code": right}, headers=headers)
    assert blocked.status_code == 429, blocked.text
    async with uow_factory() as uow:
        events = await uow.audit.for_user(_user_id(user), limit=50)
    failures = [e for e in events if e.type == "mfa.totp_confirm_failed"]
    assert len(failures) == limit
    assert all(e.data["factor"] == "otp" for e in failures)


async def test_check_totp_takes_one_step_of_drift_and_never_the_same_code_twice(
    client: httpx.AsyncClient, enrol: Enrol, factors: MfaFactors, uow_factory: UowFactory
) -> None:
    start = _start()
    with time_machine.travel(start, tick=False) as traveller:
        user = await signup_login(client)
        enrolled = await enrol(user)

        async def check(code: str) -> bool:
            async with uow_factory() as uow:
                ok = await factors.check_totp(uow, enrolled.user_id, code, datetime.now(UTC))
                await uow.commit()
            return ok

        # The code that confirmed the enrolment is used up.
        assert not await check(enrolled.code(start))
        traveller.shift(timedelta(minutes=5))
        now = datetime.now(UTC)
        assert await check(enrolled.code(now - timedelta(seconds=30)))  # one step behind
        assert await check(enrolled.code(now + timedelta(seconds=30)))  # one step ahead
        assert not await check(enrolled.code(now + timedelta(seconds=30)))  # replay
        assert not await check(enrolled.code(now))  # older than the last one used
        traveller.shift(timedelta(minutes=5))
        now = datetime.now(UTC)
        assert not await check(enrolled.code(now - timedelta(seconds=60)))  # two behind
        assert not await check(enrolled.code(now + timedelta(seconds=60)))  # two ahead
        assert not await check("12345")
        assert not await check("abcdef")
        assert await check(enrolled.code(now))
        async with uow_factory() as uow:
            factor = await uow.totp.get(enrolled.user_id)
        assert factor is not None
        assert factor.last_used_step == step_at(now)


async def test_two_racing_checks_of_one_code_accept_it_once(
    client: httpx.AsyncClient, enrol: Enrol, factors: MfaFactors, uow_factory: UowFactory
) -> None:
    start = _start()
    with time_machine.travel(start, tick=False) as traveller:
        enrolled = await enrol(await signup_login(client))
        traveller.shift(timedelta(seconds=30))
        code = enrolled.code(datetime.now(UTC))

        async def check() -> bool:
            async with uow_factory() as uow:
                ok = await factors.check_totp(uow, enrolled.user_id, code, datetime.now(UTC))
                await uow.commit()
            return ok

        results = await asyncio.gather(check(), check())
    assert sorted(results) == [False, True]


async def test_a_pending_enrolment_expires_after_ten_minutes(
    client: httpx.AsyncClient, uow_factory: UowFactory, factors: MfaFactors
) -> None:
    start = _start()
    with time_machine.travel(start, tick=False) as traveller:
        user = await signup_login(client)
        headers = bearer(user["access_token"])
        nothing = await client.post(
            "/v1/me/mfa/totp/confirm", json={"code": "123456"}, headers=headers
        )
        assert nothing.status_code == 409
        assert nothing.json()["code"] == "mfa_not_enrolled"
        secret = (await client.post("/v1/me/mfa/totp", headers=headers)).json()["secret"]
        traveller.shift(timedelta(minutes=10, seconds=1))
        late = await client.post(
            "/v1/me/mfa/totp/confirm",
            json={"code": pyotp.TOTP(secret).at(datetime.now(UTC))},
            headers=headers,
        )
        assert late.status_code == 409, late.text
        assert late.json()["code"] == "mfa_not_enrolled"
        async with uow_factory() as uow:
            assert await uow.totp.get(user_id := _user_id(user)) is None
            assert not (await uow.mfa.status(user_id)).totp

        # The periodic job drops the ones nobody came back for.
        other = await signup_login(client)
        await client.post("/v1/me/mfa/totp", headers=bearer(other["access_token"]))
        traveller.shift(timedelta(minutes=9))
        # Other tests' abandoned set-ups may go too: only this user's row is watched.
        await factors.prune_pending()
        async with uow_factory() as uow:
            assert await uow.totp.get(_user_id(other)) is not None
        traveller.shift(timedelta(minutes=1, seconds=1))
        assert await factors.prune_pending() >= 1
        async with uow_factory() as uow:
            assert await uow.totp.get(_user_id(other)) is None


def _user_id(user: dict[str, Any]) -> uuid.UUID:
    return uuid.UUID(user["user"]["id"])


async def test_removal_needs_a_recent_sign_in_and_takes_the_recovery_codes(
    client: httpx.AsyncClient, enrol: Enrol, smtp: SmtpServer, settings: Settings
) -> None:
    start = _start()
    with time_machine.travel(start, tick=False) as traveller:
        user = await signup_login(client)
        enrolled = await enrol(user)
        traveller.shift(timedelta(seconds=settings.reauthentication_max_age + 1))
        for method, path in (
            ("DELETE", "/v1/me/mfa/totp"),
            ("POST", "/v1/me/mfa/recovery-codes"),
            ("POST", "/v1/me/mfa/totp"),
        ):
            stale = await client.request(method, path, headers=enrolled.headers)
            assert stale.status_code == 403, (path, stale.text)
            assert stale.json()["code"] == "reauthentication_required"
        # Confirming is not a change of its own (the begin was): only the status shows.
        assert (await _status(client, enrolled.headers))["totp"] is True

    fresh = await signup_login(client)
    fresh_enrolled = await enrol(fresh)
    removed = await client.delete("/v1/me/mfa/totp", headers=fresh_enrolled.headers)
    assert removed.status_code == 204, removed.text
    assert await _status(client, fresh_enrolled.headers) == {
        "totp": False,
        "passkeys": 0,
        "recovery_codes_left": 0,
        "methods": [],
    }
    again = await client.delete("/v1/me/mfa/totp", headers=fresh_enrolled.headers)
    assert again.status_code == 409
    assert again.json()["code"] == "mfa_not_enrolled"
    subjects = [m["Subject"] for m in await mails_to(smtp, fresh["email"], count=3)]
    assert "A second factor was removed from your account" in subjects


async def test_api_keys_are_refused(client: httpx.AsyncClient) -> None:
    user = await signup_login(client)
    created = await client.post(
        "/v1/me/api-keys",
        json={"name": "mfa", "scopes": ["me:read", "me:write"]},
        headers=bearer(user["access_token"]),
    )
    assert created.status_code == 201, created.text
    key = bearer(created.json()["key"])
    for method, path in (
        ("GET", "/v1/me/mfa"),
        ("POST", "/v1/me/mfa/totp"),
        ("DELETE", "/v1/me/mfa/totp"),
        ("POST", "/v1/me/mfa/recovery-codes"),
    ):
        answer = await client.request(method, path, headers=key)
        assert answer.status_code == 403, (path, answer.text)
        assert answer.json()["code"] == "fresh_login_required"
    confirm = await client.post("/v1/me/mfa/totp/confirm", json={"code": "123456"}, headers=key)
    assert confirm.status_code == 403


async def test_bad_bodies_are_4xx(client: httpx.AsyncClient) -> None:
    headers = bearer((await signup_login(client))["access_token"])
    await client.post("/v1/me/mfa/totp", headers=headers)
    for body in ({}, {"code": 123456}, {"code": "1" * 33}, {"code": "123456", "x": 1}, []):
        answer = await client.post("/v1/me/mfa/totp/confirm", json=body, headers=headers)
        assert answer.status_code == 422, (body, answer.text)
    for code in ("12 34 5x", "１２３４５６", "12345\x00"):
        answer = await client.post("/v1/me/mfa/totp/confirm", json={"code": code}, headers=headers)
        assert answer.status_code == 401, (code, answer.text)
        assert answer.json()["code"] == "mfa_code_invalid"


async def test_the_seed_is_not_stored_in_clear(
    client: httpx.AsyncClient, enrol: Enrol, engine: AsyncEngine
) -> None:
    enrolled = await enrol(await signup_login(client))
    async with session_factory(engine)() as db:
        row = await db.scalar(
            select(TotpFactorRow).where(TotpFactorRow.user_id == enrolled.user_id)
        )
    assert row is not None
    stored = bytes(row.sealed_secret)
    raw = base64.b32decode(enrolled.secret)
    for clear in (enrolled.secret.encode(), enrolled.secret.lower().encode(), raw):
        assert clear not in stored
    assert stored[0] == 1  # an aead-v1 blob


async def test_graphql_me_shows_the_factors(client: httpx.AsyncClient, enrol: Enrol) -> None:
    enrolled = await enrol(await signup_login(client))
    answer = await client.post(
        "/graphql",
        json={"query": "{ me { mfa { totp passkeys recoveryCodesLeft methods } } }"},
        headers=enrolled.headers,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "data": {
            "me": {
                "mfa": {
                    "totp": True,
                    "passkeys": 0,
                    "recoveryCodesLeft": 10,
                    "methods": ["totp", "recovery_code"],
                }
            }
        }
    }
