"""Second-factor helpers and types shared by the MFA tests: pyotp plays the authenticator app."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pyotp

from helpers import PASSWORD, bearer, signup_login
from keyturn.services.ports import UnitOfWork

UowFactory = Callable[[], UnitOfWork]


@dataclass
class Enrolled:
    """A user with a confirmed TOTP factor; pyotp plays the authenticator app."""

    user_id: uuid.UUID
    headers: dict[str, str]
    secret: str
    recovery_codes: list[str] | None
    confirmed_at: datetime

    def code(self, at: datetime) -> str:
        return pyotp.TOTP(self.secret).at(at)


Enrol = Callable[[dict[str, Any]], Awaitable[Enrolled]]


def totp_code(secret: str, *, steps_ahead: int = 0) -> str:
    """The code an authenticator app shows now (or ``steps_ahead`` 30-second steps later)."""
    return pyotp.TOTP(secret).at(int(time.time()) + 30 * steps_ahead)


async def enrol_totp(client: httpx.AsyncClient, access_token: str) -> tuple[str, list[str]]:
    """Sets up TOTP for the signed-in user; returns the secret and the recovery codes."""
    started = await client.post("/v1/me/mfa/totp", headers=bearer(access_token))
    assert started.status_code == 200, started.text
    secret: str = started.json()["secret"]
    confirmed = await client.post(
        "/v1/me/mfa/totp/confirm", json={"code": totp_code(secret)}, headers=bearer(access_token)
    )
    assert confirmed.status_code == 200, confirmed.text
    codes: list[str] = confirmed.json()["recovery_codes"]
    return secret, codes


async def first_step(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD
) -> dict[str, Any]:
    """The password step of an account with a factor: the ``mfa_required`` answer."""
    answer = await client.post("/v1/auth/login", json={"email": email, "password": password})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert body["mfa_required"] is True, body
    assert "access_token" not in body
    assert "refresh_token" not in body
    return body


async def second_step(
    client: httpx.AsyncClient, mfa_token: str, method: str, **answer: Any
) -> httpx.Response:
    return await client.post(
        "/v1/auth/mfa/verify", json={"mfa_token": mfa_token, "method": method, **answer}
    )


def unverified_claims(jwt: str) -> dict[str, Any]:
    """A JWT's payload without checking it (the tests that verify use PyJWT elsewhere)."""
    payload = jwt.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


async def enrolled_account(client: httpx.AsyncClient) -> tuple[str, str, list[str]]:
    """A fresh account with TOTP: its email, secret and recovery codes."""
    signed_in = await signup_login(client)
    secret, codes = await enrol_totp(client, signed_in["access_token"])
    return signed_in["email"], secret, codes
