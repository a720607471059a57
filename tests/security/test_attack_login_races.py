"""Attack: a login racing an account event keeps a session (issue 12 finding 20).

ASVS v5.0.0 7.4.3 (all other sessions end after a password change or reset), 7.4.2
(sessions end when an account is disabled or deleted) and 7.4.1 (an ended session is
never used again). The password is checked against a snapshot of the user read before
the hash; the session is written later. Whatever ends every session of the user in
between (password change or reset, "end my other sessions", account deletion, an
admin's lock, disable, delete, reset or "end sessions") must leave the racing login
without a session: the ordinary 401, never a 500. Each pathway that opens a session from
a credential is raced: the JSON login, the hosted login page, a refresh rotation and an
authorization-code redemption. The races are forced, not hoped for: the competing event
runs at the exact point under attack (see ``race_helpers``), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import bcrypt
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from helpers import PASSWORD, admin_headers, bearer, signup_login, ui_login
from keyturn.config import Settings
from keyturn.db.engine import create_engine
from keyturn.db.models import UserRow
from keyturn.db.refresh_tokens import SqlRefreshTokenRepository
from mfa_helpers import enrol_totp
from oauth_helpers import authorize_and_redeem, register, signed_in
from race_helpers import (
    EVENTS,
    NEW_PASSWORD,
    Victim,
    blocked_or_done,
    end_other_sessions,
    live_session_ids,
    password_change,
    session_id_of,
    user_id_of,
)
from smtp_server import SmtpServer

pytestmark = pytest.mark.anyio


async def victim(app: FastAPI, http: httpx.AsyncClient, smtp: SmtpServer) -> Victim:
    """A user with one API session, and an admin (both logged in before any hook)."""
    admin = await admin_headers(app, http)
    tokens = await signup_login(http)
    return Victim(
        app=app,
        http=http,
        smtp=smtp,
        email=tokens["email"],
        user_id=await user_id_of(app, tokens["email"]),
        headers=bearer(tokens["access_token"]),
        admin=admin,
    )


def after_password_check(app: FastAPI, run: Callable[[], Awaitable[None]]) -> None:
    """Runs ``run`` once, after the next password check passed and before its session
    is written (the window of the finding)."""
    auth = app.state.services.auth
    original = auth._check_password
    armed = [True]

    async def checked_then_event(*args: Any, **kwargs: Any) -> Any:
        result = await original(*args, **kwargs)
        if armed.pop() if armed else False:
            await run()
        return result

    auth._check_password = checked_then_event


async def login_over(pathway: str, http: httpx.AsyncClient, email: str) -> httpx.Response:
    if pathway == "api":
        return await http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    return await ui_login(http, email)


@pytest.mark.parametrize("event", list(EVENTS))
@pytest.mark.parametrize("pathway", ["api", "ui"])
async def test_asvs_7_4_3_login_racing_an_account_event_keeps_no_session(
    app: FastAPI, client: httpx.AsyncClient, smtp: SmtpServer, pathway: str, event: str
) -> None:
    v = await victim(app, client, smtp)
    before = await live_session_ids(app, v.user_id)
    after_password_check(app, lambda: EVENTS[event](v))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as attacker:
        answer = await login_over(pathway, attacker, v.email)
        # The ordinary answer of a wrong password: never a 500 (a deleted account used to
        # fail the session's foreign key), never a session.
        assert answer.status_code == 401, answer.text
        if pathway == "api":
            assert answer.json()["code"] == "invalid_credentials"
        else:
            assert not any("session" in name for name in attacker.cookies)
    # Nothing new was opened; what the event ended stays ended.
    assert await live_session_ids(app, v.user_id) <= before


async def test_asvs_7_4_3_a_login_that_wrote_its_session_first_is_ended_by_the_event(
    app: FastAPI, client: httpx.AsyncClient, smtp: SmtpServer, settings: Settings
) -> None:
    """The other order: the session row is written, not yet committed, when the event
    runs. The event must wait for it and end it too (PostgreSQL: the user row lock)."""
    v = await victim(app, client, smtp)
    auth = app.state.services.auth
    original = auth._open_session
    tasks: list[asyncio.Task[None]] = []

    async def written_then_event(*args: Any, **kwargs: Any) -> Any:
        result = await original(*args, **kwargs)
        if not tasks:
            tasks.append(asyncio.create_task(password_change(v)))
            await blocked_or_done(tasks[0], settings)
        return result

    auth._open_session = written_then_event
    login = await client.post("/v1/auth/login", json={"email": v.email, "password": PASSWORD})
    await asyncio.wait_for(tasks[0], 60)
    assert login.status_code == 200, login.text
    racing = session_id_of(login.json()["access_token"])
    assert racing not in await live_session_ids(app, v.user_id)
    refresh = await client.post(
        "/v1/auth/refresh", json={"refresh_token": login.json()["refresh_token"]}
    )
    assert refresh.status_code == 401, refresh.text
    me = await client.get("/v1/me", headers=bearer(login.json()["access_token"]))
    assert me.status_code == 401, me.text


@pytest.mark.parametrize("event", ["password_change", "end_other_sessions", "admin_lock"])
async def test_asvs_7_4_1_refresh_racing_an_account_event_mints_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    smtp: SmtpServer,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    event: str,
) -> None:
    """The rotation read the session live; the event revokes it before the rotation
    writes. No successor and no access token may come out of it."""
    v = await victim(app, client, smtp)
    second = await client.post("/v1/auth/login", json={"email": v.email, "password": PASSWORD})
    assert second.status_code == 200, second.text
    original = SqlRefreshTokenRepository.rotate
    tasks: list[asyncio.Task[None]] = []

    async def event_then_rotate(self: SqlRefreshTokenRepository, *args: Any) -> bool:
        if not tasks:
            tasks.append(asyncio.create_task(EVENTS[event](v)))
            if settings.database_url.startswith("postgresql"):
                # The read holds no lock: the event commits before the rotation writes.
                await asyncio.wait_for(asyncio.shield(tasks[0]), 60)
            # SQLite: this transaction holds the write lock since its read (BEGIN
            # IMMEDIATE), so the event can only run after it; checked at the end.
        return await original(self, *args)

    monkeypatch.setattr(SqlRefreshTokenRepository, "rotate", event_then_rotate)
    answer = await client.post(
        "/v1/auth/refresh", json={"refresh_token": second.json()["refresh_token"]}
    )
    await asyncio.wait_for(tasks[0], 60)
    if settings.database_url.startswith("postgresql"):
        assert answer.status_code == 401, answer.text
        assert answer.json()["code"] == "invalid_refresh_token"
    if answer.status_code == 200:
        again = await client.post(
            "/v1/auth/refresh", json={"refresh_token": answer.json()["refresh_token"]}
        )
        assert again.status_code == 401, again.text
    assert session_id_of(second.json()["access_token"]) not in await live_session_ids(
        app, v.user_id
    )


async def test_asvs_7_4_1_code_redemption_racing_logout_everywhere_keeps_no_grant(
    app: FastAPI, client: httpx.AsyncClient, smtp: SmtpServer, settings: Settings
) -> None:
    """The redemption checked the account and is about to write the grant session when
    the owner ends every other session: the grant must not survive it."""
    oauth_client = await register(app, client)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as browser:
        email = await signed_in(browser)
        login = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        user_id = await user_id_of(app, email)
        v = Victim(
            app=app,
            http=client,
            smtp=smtp,
            email=email,
            user_id=user_id,
            headers=bearer(login.json()["access_token"]),
            admin={},
        )
        auth = app.state.services.auth
        original = auth.open_grant
        tasks: list[asyncio.Task[None]] = []

        async def event_then_open(*args: Any, **kwargs: Any) -> Any:
            if not tasks:
                tasks.append(asyncio.create_task(end_other_sessions(v)))
                await blocked_or_done(tasks[0], settings)
            return await original(*args, **kwargs)

        auth.open_grant = event_then_open
        answer = await authorize_and_redeem(browser, oauth_client, scope="openid offline_access")
        await asyncio.wait_for(tasks[0], 60)
    if answer.status_code == 200:
        # Issued before the event committed: the event must have ended it.
        refresh = await client.post(
            "/oauth2/token",
            data={"grant_type": "refresh_token", "refresh_token": answer.json()["refresh_token"]},
            auth=(oauth_client["client_id"], oauth_client["client_secret"]),
        )
        assert refresh.status_code == 400, refresh.text
        assert refresh.json()["error"] == "invalid_grant"
    else:
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == "invalid_grant"
    assert await live_session_ids(app, user_id) == {session_id_of(v.headers["Authorization"][7:])}


@pytest.mark.parametrize("second_factor", [False, True], ids=["password-only", "with-totp"])
async def test_asvs_7_4_3_a_hash_upgrade_racing_a_password_change_never_restores_the_old_password(
    app: FastAPI,
    client: httpx.AsyncClient,
    smtp: SmtpServer,
    settings: Settings,
    second_factor: bool,
) -> None:
    """A right password under an imported bcrypt hash is re-hashed to argon2id after the
    check; a password change landing in between must win, whether the login then opens a
    session (the write is conditional on the epoch) or asks for a second step first (the
    upgrade is written before the second step, conditional on the hash it replaces)."""
    v = await victim(app, client, smtp)
    if second_factor:
        await enrol_totp(client, v.headers["Authorization"].removeprefix("Bearer "))
    legacy = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    engine = create_engine(settings.database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                update(UserRow).where(UserRow.id == v.user_id).values(password_hash=legacy)
            )
    finally:
        await engine.dispose()
    after_password_check(app, lambda: password_change(v))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as attacker:
        raced = await attacker.post("/v1/auth/login", json={"email": v.email, "password": PASSWORD})
        # With a second factor the password step answers before any session is written.
        assert raced.status_code == (200 if second_factor else 401), raced.text
        old = await attacker.post("/v1/auth/login", json={"email": v.email, "password": PASSWORD})
        new = await attacker.post(
            "/v1/auth/login", json={"email": v.email, "password": NEW_PASSWORD}
        )
    assert old.status_code == 401, old.text
    assert new.status_code == 200, new.text
