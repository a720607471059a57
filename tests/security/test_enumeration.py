"""Account enumeration: a known and an unknown address get the same answer, byte for byte.

For signup, login (wrong password vs unknown user), forgot-password and resend-verification
the status, body and every header are compared, except ``date`` and ``x-request-id``
(which differ between any two requests). Rate-limit headers are *not* excluded: each of
the two requests is sent to its own freshly started app with its own limiter state
(memory store, or its own Redis key prefix), so both see identical per-IP counters and a
difference in ``RateLimit``/``Retry-After`` can only come from per-account or
per-address state -- which would leak whether the account exists.

The timing test compares the response-time distributions of login with a known address +
wrong password and login with an unknown address, interleaved, with the production
argon2 parameters, using a Mann-Whitney U rank test. It asserts there is no strong
evidence of a difference (p > 0.001), never an absolute time.

ASVS v5.0.0-6.3.8 (valid users cannot be deduced from failed authentication, including
timing), v5.0.0-6.4.1 (recovery does not reveal whether an account exists).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest

from conftest import SettingsFactory
from helpers import PASSWORD, new_email, running_app, signup_login
from keyturn.config import OWASP_ARGON2_MEMORY_KIB, OWASP_ARGON2_TIME_COST
from rank_test import mann_whitney_p

pytestmark = pytest.mark.anyio

# Retry-After / RateLimit-Reset count down with the clock (whole seconds): two runs a
# second apart differ whatever the address, so they are compared as the same header set.
VARYING_HEADERS = {"date", "x-request-id", "retry-after", "ratelimit-reset"}
WRONG_PASSWORD = "not the right password 123"
RAISED_LIMITS = {
    "limit_ip_per_minute": 1_000_000,
    "limit_failures_per_account_ip": 1_000_000,
    "limit_failures_per_account": 1_000_000,
    "limit_signups_per_ip_per_hour": 1_000_000,
    "limit_mails_per_address_per_hour": 1_000_000,
}


@dataclass(frozen=True)
class Flow:
    """One endpoint that takes an address; ``body(email)`` is its request body."""

    name: str
    path: str
    body: Callable[[str], dict[str, str]]


FLOWS = [
    Flow("signup", "/v1/auth/signup", lambda email: {"email": email, "password": PASSWORD}),
    Flow("login", "/v1/auth/login", lambda email: {"email": email, "password": WRONG_PASSWORD}),
    Flow("forgot", "/v1/auth/password/forgot", lambda email: {"email": email}),
    Flow("resend", "/v1/auth/email/verify/resend", lambda email: {"email": email}),
]


@pytest.fixture
def fresh_app(
    make_settings: SettingsFactory, redis_prefix: str
) -> Callable[[], AbstractAsyncContextManager[httpx.AsyncClient]]:
    """``fresh_app()``: a new app on the shared database with limiter state of its own.

    The Redis prefix extends the test's own prefix, so the test's cleanup removes it.
    """

    @asynccontextmanager
    async def start() -> AsyncIterator[httpx.AsyncClient]:
        settings = make_settings(redis_prefix=f"{redis_prefix}{uuid.uuid4().hex[:8]}:")
        async with running_app(settings) as client:
            yield client

    return start


def comparable(answer: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    headers = sorted(
        (name.lower(), value)
        for name, value in answer.headers.multi_items()
        if name.lower() not in VARYING_HEADERS
    )
    return answer.status_code, answer.content, headers


@pytest.mark.parametrize("flow", FLOWS, ids=lambda flow: flow.name)
async def test_known_and_unknown_addresses_get_identical_answers(
    flow: Flow, fresh_app: Callable[[], AbstractAsyncContextManager[httpx.AsyncClient]]
) -> None:
    """v5.0.0-6.3.8 / v5.0.0-6.4.1: status, body and headers do not tell a user exists."""
    known = new_email()
    async with fresh_app() as setup:
        await signup_login(setup, known)
    answers = []
    for email in (known, new_email()):
        async with fresh_app() as client:
            answers.append(await client.post(flow.path, json=flow.body(email)))
    known_answer, unknown_answer = answers
    assert known_answer.status_code < 500, known_answer.text
    assert comparable(known_answer) == comparable(unknown_answer), (
        f"{flow.name}: the answer for a known address differs from an unknown one"
    )


def test_rank_test_detects_a_difference_and_accepts_sameness() -> None:
    """The statistic can fail: shifted samples give a tiny p, interleaved ones a large p."""
    low = [float(value) for value in range(50)]
    assert mann_whitney_p(low, [value + 100 for value in low]) < 1e-10
    assert mann_whitney_p(low[0::2], low[1::2]) > 0.5
    assert mann_whitney_p([1.0] * 10, [1.0] * 10) == 1.0


SAMPLES = 50


@pytest.mark.slow
async def test_login_timing_does_not_tell_known_from_unknown(
    make_settings: SettingsFactory,
) -> None:
    """v5.0.0-6.3.8: wrong password vs unknown user, real argon2 parameters, rank test."""
    settings = make_settings(
        argon2_memory_kib=OWASP_ARGON2_MEMORY_KIB,
        argon2_time_cost=OWASP_ARGON2_TIME_COST,
        **RAISED_LIMITS,
    )
    async with running_app(settings) as client:
        known = (await signup_login(client))["email"]

        async def timed(call: Callable[[], Awaitable[httpx.Response]]) -> float:
            started = time.perf_counter()
            answer = await call()
            elapsed = time.perf_counter() - started
            assert answer.status_code == 401, answer.text
            return elapsed

        def login(email: str) -> Callable[[], Awaitable[httpx.Response]]:
            body = {"email": email, "password": WRONG_PASSWORD}
            return lambda: client.post("/v1/auth/login", json=body)

        # Warm-up: first calls pay for pool threads and caches on either path.
        for _ in range(3):
            await timed(login(known))
            await timed(login(new_email()))
        known_times: list[float] = []
        unknown_times: list[float] = []
        for index in range(SAMPLES):
            # Alternate which goes first, so drift hits both samples alike.
            order = (known, None) if index % 2 == 0 else (None, known)
            for email in order:
                elapsed = await timed(login(email or new_email()))
                (known_times if email else unknown_times).append(elapsed)
    p = mann_whitney_p(known_times, unknown_times)
    assert p > 0.001, (
        f"login time tells a known address from an unknown one (Mann-Whitney p={p:.2e}; "
        f"median known {sorted(known_times)[SAMPLES // 2]:.4f}s, "
        f"unknown {sorted(unknown_times)[SAMPLES // 2]:.4f}s)"
    )


MAIL_FLOWS = [flow for flow in FLOWS if flow.name in ("forgot", "resend")]


@pytest.mark.parametrize("flow", MAIL_FLOWS, ids=lambda flow: flow.name)
async def test_mail_limit_does_not_tell_known_from_unknown(
    flow: Flow,
    make_settings: SettingsFactory,
    fresh_app: Callable[[], AbstractAsyncContextManager[httpx.AsyncClient]],
) -> None:
    """v5.0.0-6.4.1: past the per-address mail limit, both addresses get the same answers.

    A limit counted only when a mail is really sent (known addresses) would answer 429
    for a known address and 202 for an unknown one.
    """
    limit = make_settings().limit_mails_per_address_per_hour
    known = new_email()
    async with fresh_app() as setup:
        await signup_login(setup, known)
    runs = []
    for email in (known, new_email()):
        async with fresh_app() as client:
            runs.append(
                [
                    comparable(await client.post(flow.path, json=flow.body(email)))
                    for _ in range(limit + 2)
                ]
            )
    assert runs[0] == runs[1], f"{flow.name}: answers past the mail limit differ"
