"""Refresh-token rotation, grace and reuse detection (DESIGN.md section 4)."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import time_machine
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from helpers import PASSWORD, bearer, running_app, signup_login
from keyturn.config import Settings
from keyturn.db.engine import create_engine
from keyturn.db.models import AuditEventRow, RefreshTokenRow, SessionRow

pytestmark = pytest.mark.anyio


def sid_of(access_token: str) -> uuid.UUID:
    payload = access_token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return uuid.UUID(claims["sid"])


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings.database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/v1/auth/refresh", json={"refresh_token": token})


async def test_rotation_gives_one_successor_per_use(client: httpx.AsyncClient) -> None:
    tokens = await signup_login(client)
    first = await refresh(client, tokens["refresh_token"])
    second = await refresh(client, first.json()["refresh_token"])
    assert first.status_code == second.status_code == 200
    chain = {tokens["refresh_token"], first.json()["refresh_token"], second.json()["refresh_token"]}
    assert len(chain) == 3
    me = await client.get("/v1/me", headers=bearer(second.json()["access_token"]))
    assert me.status_code == 200


async def test_retry_within_grace_returns_the_same_successor(client: httpx.AsyncClient) -> None:
    tokens = await signup_login(client)
    first = await refresh(client, tokens["refresh_token"])
    retry = await refresh(client, tokens["refresh_token"])
    assert retry.status_code == 200
    assert retry.json()["refresh_token"] == first.json()["refresh_token"]
    # A fresh access token, and the successor still rotates normally afterwards.
    assert retry.json()["access_token"] != first.json()["access_token"]
    onward = await refresh(client, first.json()["refresh_token"])
    assert onward.status_code == 200


async def test_older_generation_revokes_the_family(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    tokens = await signup_login(client)
    first = (await refresh(client, tokens["refresh_token"])).json()
    second = (await refresh(client, first["refresh_token"])).json()
    # Generation 0 again, inside the grace window: its successor was already used, so
    # this is theft or a bug, never a retry (django-oauth-toolkit #1617).
    reuse = await refresh(client, tokens["refresh_token"])
    assert reuse.status_code == 401
    assert reuse.json()["code"] == "invalid_refresh_token"
    await _assert_family_dead(client, settings, second)


async def test_predecessor_after_the_window_revokes_the_family(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    start = datetime.now(UTC)
    with time_machine.travel(start, tick=False) as traveller:
        tokens = await signup_login(client)
        first = (await refresh(client, tokens["refresh_token"])).json()
        traveller.shift(timedelta(seconds=settings.refresh_reuse_grace + 1))
        late = await refresh(client, tokens["refresh_token"])
        assert late.status_code == 401
        await _assert_family_dead(client, settings, first)


async def test_grace_zero_turns_the_retry_off(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(refresh_reuse_grace=0)
    async with running_app(settings) as client:
        tokens = await signup_login(client)
        first = (await refresh(client, tokens["refresh_token"])).json()
        retry = await refresh(client, tokens["refresh_token"])
        assert retry.status_code == 401
        await _assert_family_dead(client, settings, first)


async def test_absolute_lifetime_is_never_extended(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(refresh_token_ttl=3600, session_idle_ttl=3000)
    start = datetime.now(UTC)
    async with running_app(settings) as client:
        with time_machine.travel(start, tick=False) as traveller:
            tokens = await signup_login(client)
            traveller.shift(timedelta(seconds=2900))
            first = await refresh(client, tokens["refresh_token"])
            assert first.status_code == 200
            traveller.shift(timedelta(seconds=2900))  # idle 2900 s < 3000 s, age 5800 s
            second = await refresh(client, first.json()["refresh_token"])
            assert second.status_code == 401
            assert second.json()["code"] == "invalid_refresh_token"


async def test_idle_timeout_ends_the_session(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(session_idle_ttl=600)
    start = datetime.now(UTC)
    async with running_app(settings) as client:
        with time_machine.travel(start, tick=False) as traveller:
            tokens = await signup_login(client)
            traveller.shift(timedelta(seconds=599))
            kept = await refresh(client, tokens["refresh_token"])
            assert kept.status_code == 200  # use resets the idle clock
            traveller.shift(timedelta(seconds=599))
            again = await refresh(client, kept.json()["refresh_token"])
            assert again.status_code == 200
            traveller.shift(timedelta(seconds=601))
            idle = await refresh(client, again.json()["refresh_token"])
            assert idle.status_code == 401


@pytest.mark.parametrize("token", ["", "short", "x" * 43 + "!", "A" * 43, "A" * 512, "\u00e9" * 43])
async def test_unknown_or_malformed_refresh_tokens(client: httpx.AsyncClient, token: str) -> None:
    answer = await refresh(client, token)
    assert answer.status_code in (401, 422)
    assert answer.headers["content-type"] == "application/problem+json; charset=utf-8"
    if answer.status_code == 401:
        assert answer.json()["code"] == "invalid_refresh_token"


async def test_twenty_concurrent_refreshes_share_one_successor(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """A burst of retries of one token (many tabs) yields exactly one successor."""
    tokens = await signup_login(client)
    answers = await asyncio.gather(*(refresh(client, tokens["refresh_token"]) for _ in range(20)))
    assert [answer.status_code for answer in answers] == [200] * 20
    successors = {answer.json()["refresh_token"] for answer in answers}
    assert len(successors) == 1
    sid = sid_of(tokens["access_token"])
    async with database(settings) as engine, engine.connect() as connection:
        rows = (
            await connection.execute(
                select(RefreshTokenRow.generation).where(RefreshTokenRow.session_id == sid)
            )
        ).all()
    assert sorted(row.generation for row in rows) == [0, 1]
    onward = await refresh(client, successors.pop())
    assert onward.status_code == 200


async def _assert_family_dead(
    client: httpx.AsyncClient, settings: Settings, latest: dict[str, Any]
) -> None:
    """The newest pair of the family no longer works, and the reuse was audited."""
    dead = await refresh(client, latest["refresh_token"])
    assert dead.status_code == 401
    me = await client.get("/v1/me", headers=bearer(latest["access_token"]))
    assert me.status_code == 401
    assert me.json()["code"] == "session_revoked"
    sid = sid_of(latest["access_token"])
    async with database(settings) as engine, engine.connect() as connection:
        reason = await connection.scalar(
            select(SessionRow.revoke_reason).where(SessionRow.id == sid)
        )
        audited = await connection.scalar(
            select(func.count())
            .select_from(AuditEventRow)
            .where(
                AuditEventRow.session_id == sid,
                AuditEventRow.type == "refresh_token.reuse_detected",
            )
        )
    assert reason == "refresh_token_reuse"
    assert audited == 1


async def test_idle_sessions_are_not_listed(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(session_idle_ttl=600)
    start = datetime.now(UTC)
    async with running_app(settings) as client:
        with time_machine.travel(start, tick=False) as traveller:
            tokens = await signup_login(client)
            traveller.shift(timedelta(seconds=500))
            fresh = await client.post(
                "/v1/auth/login", json={"email": tokens["email"], "password": PASSWORD}
            )
            traveller.shift(timedelta(seconds=200))  # first session idle 700 s > 600 s
            listed = await client.get(
                "/v1/me/sessions", headers=bearer(fresh.json()["access_token"])
            )
            assert [item["current"] for item in listed.json()["items"]] == [True]
