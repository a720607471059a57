"""Timing must not tell whether an address has an account (issue 12, finding 5).

The attack pass measured ``POST /v1/auth/password/forgot`` and
``POST /v1/auth/email/verify/resend`` at 10.6 ms for a known address and 3.7 ms for an
unknown one (PostgreSQL): the request did the account-dependent work (token, mail,
audit) inline. Now every such request queues one outbox row of the same shape whatever
the address, and the outbox worker does the account-dependent work after the answer.

Each test interleaves requests for a known and an unknown address on one app and
compares the two response-time samples with the Mann-Whitney U rank test of
``test_enumeration``; it asserts there is no strong evidence of a difference
(p > 0.001), never an absolute time. Signup (taken vs free address) and the email change
(``POST /v1/me/email`` to a taken vs a free address) are measured the same way.

ASVS v5.0.0-6.3.8 (valid users cannot be deduced from failed authentication or
recovery, including by timing).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from conftest import SettingsFactory
from helpers import PASSWORD, bearer, new_email, running_app, signup_login
from rank_test import mann_whitney_p

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

RAISED_LIMITS = {
    "limit_ip_per_minute": 1_000_000,
    "limit_failures_per_account_ip": 1_000_000,
    "limit_signups_per_ip_per_hour": 1_000_000,
    "limit_mails_per_address_per_hour": 1_000_000,
    "limit_mails_per_address_all_networks_per_hour": 1_000_000,
}
SAMPLES = 50
WARM_UP = 5

Request = Callable[[httpx.AsyncClient, str], Awaitable[httpx.Response]]


async def compare(
    client: httpx.AsyncClient, request: Request, known: str, status: int
) -> tuple[float, list[float], list[float]]:
    """Interleaved timings of ``request`` for ``known`` and for fresh unknown addresses."""

    async def timed(email: str) -> float:
        started = time.perf_counter()
        answer = await request(client, email)
        elapsed = time.perf_counter() - started
        assert answer.status_code == status, answer.text
        return elapsed

    for _ in range(WARM_UP):  # pool threads, caches and prepared statements on both paths
        await timed(known)
        await timed(new_email())
    known_times: list[float] = []
    unknown_times: list[float] = []
    for index in range(SAMPLES):
        # Alternate which goes first, so drift hits both samples alike.
        for is_known in (True, False) if index % 2 == 0 else (False, True):
            if is_known:
                known_times.append(await timed(known))
            else:
                unknown_times.append(await timed(new_email()))
    return mann_whitney_p(known_times, unknown_times), known_times, unknown_times


def verdict(name: str, p: float, known: list[float], unknown: list[float]) -> str:
    return (
        f"{name} time tells a known address from an unknown one (Mann-Whitney p={p:.2e}; "
        f"median known {sorted(known)[SAMPLES // 2] * 1000:.2f} ms, "
        f"unknown {sorted(unknown)[SAMPLES // 2] * 1000:.2f} ms)"
    )


def post_email(path: str) -> Request:
    return lambda client, email: client.post(path, json={"email": email})


@pytest.mark.parametrize(
    "path", ["/v1/auth/password/forgot", "/v1/auth/email/verify/resend"], ids=["forgot", "resend"]
)
async def test_asvs_6_3_8_recovery_mail_requests_take_the_same_time_for_any_address(
    path: str, make_settings: SettingsFactory
) -> None:
    async with running_app(make_settings(**RAISED_LIMITS)) as client:
        # Signed up and never verified: both flows would mail this account.
        known = (await signup_login(client))["email"]
        p, known_times, unknown_times = await compare(client, post_email(path), known, 202)
    assert p > 0.001, verdict(path, p, known_times, unknown_times)


async def test_asvs_6_3_8_signup_takes_the_same_time_for_a_taken_address(
    make_settings: SettingsFactory,
) -> None:
    async def signup(client: httpx.AsyncClient, email: str) -> httpx.Response:
        return await client.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})

    async with running_app(make_settings(**RAISED_LIMITS)) as client:
        known = (await signup_login(client))["email"]
        p, known_times, unknown_times = await compare(client, signup, known, 202)
    assert p > 0.001, verdict("signup", p, known_times, unknown_times)


async def test_asvs_6_3_8_email_change_takes_the_same_time_for_a_taken_address(
    make_settings: SettingsFactory,
) -> None:
    async with running_app(make_settings(**RAISED_LIMITS)) as client:
        taken = (await signup_login(client))["email"]
        mover: dict[str, Any] = await signup_login(client)

        async def change(http: httpx.AsyncClient, email: str) -> httpx.Response:
            return await http.post(
                "/v1/me/email",
                json={"password": PASSWORD, "new_email": email},
                headers=bearer(mover["access_token"]),
            )

        p, known_times, unknown_times = await compare(client, change, taken, 202)
    assert p > 0.001, verdict("email change", p, known_times, unknown_times)
