"""Deterministic races: run a competing account event at an exact point of a request.

A test pauses a request at the point under attack (a patched method), runs the competing
event there, and resumes. When the paused request already holds its transaction, the
event may have to wait for it: :func:`blocked_or_done` then returns once PostgreSQL
reports the event waiting on a row lock (or the event finished: the lock that should
have stopped it was missing). SQLite starts every write transaction with BEGIN IMMEDIATE,
so there the event cannot overtake the paused transaction at all.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from helpers import PASSWORD, mails_to
from keyturn.config import Settings
from smtp_server import SmtpServer, extract_token

NEW_PASSWORD = "a brand new passphrase 42"
# Bounds a wait that should end at once, so a broken test fails instead of hanging.
PATIENCE = 30.0

_LOCK_WAITERS = text(
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


async def blocked_or_done(task: asyncio.Task[Any], settings: Settings) -> None:
    """Returns when ``task`` has finished or, on PostgreSQL, waits on a row lock."""
    if not settings.database_url.startswith("postgresql"):
        # SQLite: BEGIN IMMEDIATE of the event waits for the paused transaction anyway.
        await asyncio.sleep(0)
        return
    engine = create_async_engine(settings.database_url, isolation_level="AUTOCOMMIT")
    try:
        deadline = asyncio.get_running_loop().time() + PATIENCE
        async with engine.connect() as conn:
            while not task.done():
                if (await conn.execute(_LOCK_WAITERS)).scalar_one() > 0:
                    return
                assert asyncio.get_running_loop().time() < deadline, "event neither ran nor waited"
                await asyncio.sleep(0.01)
    finally:
        await engine.dispose()


@dataclass
class Victim:
    """An account with one API session (``headers``) and an admin able to act on it."""

    app: FastAPI
    http: httpx.AsyncClient
    smtp: SmtpServer
    email: str
    user_id: uuid.UUID
    headers: dict[str, str]
    admin: dict[str, str]


async def _ok(answer: Awaitable[httpx.Response]) -> None:
    response = await answer
    assert response.status_code < 300, response.text


async def password_change(v: Victim) -> None:
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    await _ok(v.http.post("/v1/me/password", json=body, headers=v.headers))


async def password_reset(v: Victim) -> None:
    await _ok(v.http.post("/v1/auth/password/forgot", json={"email": v.email}))
    mails = await mails_to(v.smtp, v.email, count=2)
    (reset,) = [mail for mail in mails if "reset" in str(mail["Subject"]).lower()]
    body = {"token": extract_token(reset), "password": NEW_PASSWORD}
    await _ok(v.http.post("/v1/auth/password/reset", json=body))


async def end_other_sessions(v: Victim) -> None:
    await _ok(v.http.delete("/v1/me/sessions", headers=v.headers))


async def account_delete(v: Victim) -> None:
    await _ok(v.http.request("DELETE", "/v1/me", json={"password": PASSWORD}, headers=v.headers))


async def admin_lock(v: Victim) -> None:
    await _ok(v.http.post(f"/v1/admin/users/{v.user_id}/lock", headers=v.admin))


async def admin_disable(v: Victim) -> None:
    body = {"disabled": True}
    await _ok(v.http.patch(f"/v1/admin/users/{v.user_id}", json=body, headers=v.admin))


async def admin_delete(v: Victim) -> None:
    await _ok(v.http.delete(f"/v1/admin/users/{v.user_id}", headers=v.admin))


async def admin_reset_password(v: Victim) -> None:
    await _ok(v.http.post(f"/v1/admin/users/{v.user_id}/reset-password", headers=v.admin))


async def admin_end_sessions(v: Victim) -> None:
    await _ok(v.http.delete(f"/v1/admin/users/{v.user_id}/sessions", headers=v.admin))


Event = Callable[[Victim], Awaitable[None]]

# Every account event that ends all (or all other) sessions of a user.
EVENTS: dict[str, Event] = {
    "password_change": password_change,
    "password_reset": password_reset,
    "end_other_sessions": end_other_sessions,
    "account_delete": account_delete,
    "admin_lock": admin_lock,
    "admin_disable": admin_disable,
    "admin_delete": admin_delete,
    "admin_reset_password": admin_reset_password,
    "admin_end_sessions": admin_end_sessions,
}


async def user_id_of(app: FastAPI, email: str) -> uuid.UUID:
    async with app.state.services.auth._uow_factory() as uow:
        user = await uow.users.get_by_email(email)
    assert user is not None
    return user.id


async def live_session_ids(app: FastAPI, user_id: uuid.UUID) -> set[uuid.UUID]:
    """The user's live sessions, read from the database (none for a deleted user)."""
    page = await app.state.services.sessions.list_for(user_id, limit=100, cursor=None)
    return {session.id for session in page.items}


def session_id_of(access_token: str) -> uuid.UUID:
    """The ``sid`` of a token the test itself just received (no verification needed)."""
    claims = jwt.decode(access_token, options={"verify_signature": False})
    return uuid.UUID(claims["sid"])
