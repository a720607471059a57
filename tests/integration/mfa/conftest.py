"""Fixtures of the second-factor tests: a unit of work on the app's database, the
``MfaFactors`` service, and an enrolment helper that plays the authenticator app."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pyotp
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from conftest import SettingsFactory
from helpers import bearer
from keyturn.config import Settings
from keyturn.db.engine import create_engine, session_factory
from keyturn.db.unit_of_work import SqlUnitOfWork
from keyturn.domain import utcnow
from keyturn.services.mfa import MfaFactors
from mfa_helpers import Enrol, Enrolled, UowFactory


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    # Access tokens outlive the 10-minute enrolment window these tests step over.
    return make_settings(access_token_ttl=3600)


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    created = create_engine(settings.database_url)
    yield created
    await created.dispose()


@pytest.fixture
def uow_factory(engine: AsyncEngine) -> UowFactory:
    sessions = session_factory(engine)
    return lambda: SqlUnitOfWork(sessions)


@pytest.fixture
def factors(app: FastAPI) -> MfaFactors:
    found: MfaFactors = app.state.services.mfa.factors
    return found


@pytest.fixture
def enrol(client: httpx.AsyncClient) -> Enrol:
    """Sets up TOTP for a signed-in user (``signup_login``'s answer) through the JSON API,
    with pyotp as the authenticator app."""

    async def run(user: dict[str, Any]) -> Enrolled:
        headers = bearer(user["access_token"])
        begun = await client.post("/v1/me/mfa/totp", headers=headers)
        assert begun.status_code == 200, begun.text
        secret = begun.json()["secret"]
        now = utcnow()
        confirmed = await client.post(
            "/v1/me/mfa/totp/confirm",
            json={"code": pyotp.TOTP(secret).at(now)},
            headers=headers,
        )
        assert confirmed.status_code == 200, confirmed.text
        return Enrolled(
            user_id=uuid.UUID(user["user"]["id"]),
            headers=headers,
            secret=secret,
            recovery_codes=confirmed.json()["recovery_codes"],
            confirmed_at=now,
        )

    return run
