"""Recovery codes (regenerate, count, single use under a race), the administrator's reset
and ``keyturn secret rotate`` re-sealing TOTP seeds (issue 15)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import httpx
import pyotp
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from typer.testing import CliRunner

from conftest import SettingsFactory
from helpers import (
    PASSWORD,
    TEST_SECRET,
    admin_login,
    bearer,
    create_role,
    grant_role,
    lifespan,
    mails_to,
    signup_login,
)
from keyturn.app import create_app
from keyturn.cli.main import app as cli_app
from keyturn.config import Settings
from keyturn.db.engine import create_engine, session_factory
from keyturn.db.models import TotpFactorRow
from keyturn.db.unit_of_work import SqlUnitOfWork
from keyturn.domain import utcnow
from keyturn.domain_mfa import Passkey
from keyturn.security.aead import Aead
from keyturn.security.digests import KeyRing
from keyturn.services.mfa import MfaFactors
from mfa_helpers import Enrol, UowFactory
from smtp_server import SmtpServer
from sql_spy import queries, statements_run_here

pytestmark = pytest.mark.anyio

NEW_SECRET = "another-test-secret-key-9876543210-zyxwvutsrq"


async def _redeem(
    factors: MfaFactors, uow_factory: UowFactory, user_id: uuid.UUID, code: str
) -> bool:
    async with uow_factory() as uow:
        user = await uow.users.get(user_id)
        assert user is not None
        ok = await factors.redeem_recovery_code(uow, user, code, utcnow())
        await uow.commit()
    factors.wake_mail()
    return ok


async def test_a_recovery_code_works_once_and_the_owner_is_told(
    client: httpx.AsyncClient,
    enrol: Enrol,
    factors: MfaFactors,
    uow_factory: UowFactory,
    smtp: SmtpServer,
) -> None:
    user = await signup_login(client)
    enrolled = await enrol(user)
    assert enrolled.recovery_codes is not None
    code = enrolled.recovery_codes[0]
    # Typed from paper: case, spaces and dashes are forgiven.
    assert await _redeem(factors, uow_factory, enrolled.user_id, f" {code.upper()} ")
    assert not await _redeem(factors, uow_factory, enrolled.user_id, code)
    assert not await _redeem(factors, uow_factory, enrolled.user_id, "not-a-code")
    status = await client.get("/v1/me/mfa", headers=enrolled.headers)
    assert status.json()["recovery_codes_left"] == 9
    subjects = [m["Subject"] for m in await mails_to(smtp, user["email"], count=3)]
    assert "A recovery code was used to sign in" in subjects
    async with uow_factory() as uow:
        events = await uow.audit.for_user(enrolled.user_id, limit=20)
    used = [e for e in events if e.type == "mfa.recovery_code_used"]
    assert len(used) == 1
    assert used[0].data["codes_left"] == 9
    assert code not in str(used[0].data)


async def test_two_racing_redemptions_of_one_code_succeed_once(
    client: httpx.AsyncClient, enrol: Enrol, factors: MfaFactors, uow_factory: UowFactory
) -> None:
    enrolled = await enrol(await signup_login(client))
    assert enrolled.recovery_codes is not None
    code = enrolled.recovery_codes[3]
    # Two transactions at once: on PostgreSQL the second UPDATE waits for the first's
    # row lock, then finds the code used (``used_at IS NULL`` no longer holds).
    results = await asyncio.gather(
        _redeem(factors, uow_factory, enrolled.user_id, code),
        _redeem(factors, uow_factory, enrolled.user_id, code),
    )
    assert sorted(results) == [False, True]
    async with uow_factory() as uow:
        assert await uow.recovery_codes.count_left(enrolled.user_id) == 9


async def test_regenerating_replaces_every_code(
    client: httpx.AsyncClient,
    enrol: Enrol,
    factors: MfaFactors,
    uow_factory: UowFactory,
    smtp: SmtpServer,
) -> None:
    lone = await signup_login(client)
    refused = await client.post("/v1/me/mfa/recovery-codes", headers=bearer(lone["access_token"]))
    assert refused.status_code == 409
    assert refused.json()["code"] == "mfa_not_enrolled"

    user = await signup_login(client)
    enrolled = await enrol(user)
    assert enrolled.recovery_codes is not None
    assert await _redeem(factors, uow_factory, enrolled.user_id, enrolled.recovery_codes[0])
    answer = await client.post("/v1/me/mfa/recovery-codes", headers=enrolled.headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    fresh = answer.json()["recovery_codes"]
    assert len(fresh) == 10
    assert not set(fresh) & set(enrolled.recovery_codes)
    status = await client.get("/v1/me/mfa", headers=enrolled.headers)
    assert status.json()["recovery_codes_left"] == 10
    assert not await _redeem(factors, uow_factory, enrolled.user_id, enrolled.recovery_codes[1])
    assert await _redeem(factors, uow_factory, enrolled.user_id, fresh[1])
    subjects = [m["Subject"] for m in await mails_to(smtp, user["email"], count=4)]
    assert "New recovery codes were made for your account" in subjects


async def test_a_second_factor_keeps_the_existing_recovery_codes(
    client: httpx.AsyncClient, enrol: Enrol, uow_factory: UowFactory
) -> None:
    user = await signup_login(client)
    enrolled = await enrol(user)
    assert enrolled.recovery_codes is not None
    # Removed and set up again while a (simulated) passkey stays: not the first factor.
    async with uow_factory() as uow:
        await uow.passkeys.add(_passkey(enrolled.user_id))
        await uow.commit()
    assert (await client.delete("/v1/me/mfa/totp", headers=enrolled.headers)).status_code == 204
    again = await enrol(user)
    assert again.recovery_codes is None
    status = (await client.get("/v1/me/mfa", headers=enrolled.headers)).json()
    assert status == {
        "totp": True,
        "passkeys": 1,
        "recovery_codes_left": 10,
        "methods": ["totp", "webauthn", "recovery_code"],
    }


def _passkey(user_id: uuid.UUID) -> Passkey:
    return Passkey(
        id=uuid.uuid4(),
        user_id=user_id,
        credential_id=uuid.uuid4().bytes,
        public_key=b"\xa5\x01\x02",
        sign_count=0,
        transports=("internal",),
        name="test",
        aaguid="00000000-0000-0000-0000-000000000000",
        backup_eligible=True,
        backed_up=True,
        created_at=utcnow(),
        last_used_at=None,
    )


async def test_admin_reset_deletes_every_factor(
    app: FastAPI,
    client: httpx.AsyncClient,
    enrol: Enrol,
    uow_factory: UowFactory,
    smtp: SmtpServer,
) -> None:
    user = await signup_login(client)
    enrolled = await enrol(user)
    async with uow_factory() as uow:
        await uow.passkeys.add(_passkey(enrolled.user_id))
        await uow.commit()
    path = f"/v1/admin/users/{enrolled.user_id}/mfa"

    bystander = await signup_login(client)
    denied = await client.delete(path, headers=bearer(bystander["access_token"]))
    assert denied.status_code == 403, denied.text
    assert denied.json()["code"] == "permission_denied"

    admin = await admin_login(app, client)
    headers = bearer(admin["access_token"])
    shown = await client.get(f"/v1/admin/users/{enrolled.user_id}", headers=headers)
    assert shown.json()["mfa"] == {"totp": True, "passkeys": 1, "recovery_codes_left": 10}
    listed = await client.get("/v1/admin/users", params={"q": user["email"]}, headers=headers)
    assert [item["mfa"]["totp"] for item in listed.json()["items"]] == [True]
    assert "secret" not in shown.text

    reset = await client.delete(path, headers=headers)
    assert reset.status_code == 204, reset.text
    shown = await client.get(f"/v1/admin/users/{enrolled.user_id}", headers=headers)
    assert shown.json()["mfa"] == {"totp": False, "passkeys": 0, "recovery_codes_left": 0}
    own = await client.get("/v1/me/mfa", headers=enrolled.headers)
    assert own.json()["methods"] == []
    missing = await client.delete(f"/v1/admin/users/{uuid.uuid4()}/mfa", headers=headers)
    assert missing.status_code == 404

    events = await client.get(
        "/v1/admin/audit-events",
        params={"type": "mfa.reset", "user_id": admin["user"]["id"]},
        headers=headers,
    )
    (event,) = events.json()["items"]
    assert event["data"]["target_user_id"] == str(enrolled.user_id)
    assert event["data"]["passkeys"] == 1
    subjects = [m["Subject"] for m in await mails_to(smtp, user["email"], count=3)]
    assert "Your second factors were reset" in subjects

    graphql = await client.post(
        "/graphql",
        json={"query": f'{{ user(id: "{enrolled.user_id}") {{ mfa {{ totp passkeys }} }} }}'},
        headers=headers,
    )
    assert graphql.json() == {"data": {"user": {"mfa": {"totp": False, "passkeys": 0}}}}


async def test_admin_reset_obeys_the_target_rank(app: FastAPI, client: httpx.AsyncClient) -> None:
    admin = await admin_login(app, client)
    admin_headers = bearer(admin["access_token"])
    helper = await signup_login(client)
    role = await create_role(client, admin_headers, ["users:read", "users:write"])
    await grant_role(client, admin_headers, helper["user"]["id"], role)
    helper_headers = bearer(
        (
            await client.post(
                "/v1/auth/login", json={"email": helper["email"], "password": PASSWORD}
            )
        ).json()["access_token"]
    )
    # users:write, but the admin holds more: nobody resets a more powerful account.
    answer = await client.delete(
        f"/v1/admin/users/{admin['user']['id']}/mfa", headers=helper_headers
    )
    assert answer.status_code == 403, answer.text
    assert answer.json()["code"] == "target_outranks_caller"
    peer = await signup_login(client)
    answer = await client.delete(
        f"/v1/admin/users/{peer['user']['id']}/mfa", headers=helper_headers
    )
    assert answer.status_code == 204, answer.text


def _cli(args: list[str], settings: Settings, secret: str, tmp_path: Path) -> tuple[int, str]:
    env = {
        "KEYTURN_DATABASE_URL": settings.database_url,
        "KEYTURN_SECRET_KEY": secret,
        "KEYTURN_DATA_DIR": str(tmp_path / "cli"),
    }
    result = CliRunner().invoke(cli_app, args, env=env)
    return result.exit_code, result.output


@asynccontextmanager
async def _serving(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    application = create_app(settings)
    async with lifespan(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield application, http


async def test_secret_rotate_reseals_seeds_and_codes_still_verify(
    make_settings: SettingsFactory, private_database_url: str, tmp_path: Path
) -> None:
    old = make_settings(database_url=private_database_url, outbox_worker="off")
    async with _serving(old) as (_, client):
        user = await signup_login(client)
        headers = bearer(user["access_token"])
        secret = (await client.post("/v1/me/mfa/totp", headers=headers)).json()["secret"]
        confirmed = await client.post(
            "/v1/me/mfa/totp/confirm", json={"code": pyotp.TOTP(secret).now()}, headers=headers
        )
        assert confirmed.status_code == 200, confirmed.text

    ring = f"{NEW_SECRET},{TEST_SECRET}"
    code, output = await anyio.to_thread.run_sync(_cli, ["secret", "rotate"], old, ring, tmp_path)
    assert code == 0, output
    assert "TOTP seeds: 1 re-encrypted, 0 already current" in output
    code, output = await anyio.to_thread.run_sync(_cli, ["secret", "rotate"], old, ring, tmp_path)
    assert "TOTP seeds: 0 re-encrypted, 1 already current" in output

    engine = create_engine(private_database_url)
    try:
        async with session_factory(engine)() as db:
            (blob,) = (await db.scalars(select(TotpFactorRow.sealed_secret))).all()
        assert not Aead(KeyRing.from_strings([NEW_SECRET])).needs_reencrypt(blob)
    finally:
        await engine.dispose()

    # The old key is gone: the seed opens under the new key alone and a code verifies.
    new = make_settings(database_url=private_database_url, secret_key=[NEW_SECRET])
    async with _serving(new) as (application, _):
        factors: MfaFactors = application.state.services.mfa.factors
        later = datetime.now(UTC) + timedelta(seconds=60)
        engine = create_engine(private_database_url)
        try:
            async with SqlUnitOfWork(session_factory(engine)) as uow:
                user_id = uuid.UUID(user["user"]["id"])
                ok = await factors.check_totp(uow, user_id, pyotp.TOTP(secret).at(later), later)
                await uow.commit()
        finally:
            await engine.dispose()
    assert ok


async def test_a_page_of_users_shows_factors_in_a_fixed_number_of_statements(
    make_settings: SettingsFactory,
) -> None:
    # No background work (the audit sealer included) while statements are counted.
    settings = make_settings(
        outbox_worker="off", key_rotation_check_seconds=86400, audit_seal_seconds=3600
    )
    async with _serving(settings) as (application, client):
        headers = bearer((await admin_login(application, client))["access_token"])
        counts: dict[int, int] = {}
        for size in (2, 8):
            tag = uuid.uuid4().hex[:10]
            for index in range(size):
                created = await client.post(
                    "/v1/admin/users", json={"email": f"{tag}-{index}@example.com"}, headers=headers
                )
                assert created.status_code == 201, created.text
            query = '{ users(q: "%s") { edges { node { mfa { totp } } } } }'
            with statements_run_here() as statements:
                listed = await client.get("/v1/admin/users", params={"q": tag}, headers=headers)
                graphql = await client.post(
                    "/graphql",
                    json={"query": query % tag},
                    headers=headers,
                )
            counts[size] = len(queries(statements))
            assert [item["mfa"]["totp"] for item in listed.json()["items"]] == [False] * size
            edges = graphql.json()["data"]["users"]["edges"]
            assert [edge["node"]["mfa"]["totp"] for edge in edges] == [False] * size
    assert counts[2] == counts[8] > 0, counts
