"""Throttling and the silent account lock (DESIGN.md section 5; ASVS v5.0.0-6.3.1, 6.3.4)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from helpers import PASSWORD, bearer, mails_to, new_email, serving, signup_login
from keyturn.config import Settings
from smtp_server import SmtpServer, extract_token

pytestmark = pytest.mark.anyio

WRONG = "not the right password"
# Headers that differ between any two answers whatever the outcome.
VOLATILE = {"date", "x-request-id"}


async def test_eleventh_failure_from_one_ip_gets_429_but_other_ips_still_log_in(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings()) as client:
        attacker, owner = client("203.0.113.9"), client("198.51.100.4")
        email = (await signup_login(owner))["email"]
        for _ in range(10):
            answer = await attacker.post("/v1/auth/login", json={"email": email, "password": WRONG})
            assert answer.status_code == 401
        blocked = await attacker.post("/v1/auth/login", json={"email": email, "password": WRONG})
        assert blocked.status_code == 429
        assert blocked.json()["code"] == "rate_limited"
        assert int(blocked.headers["retry-after"]) >= 1
        assert blocked.headers["ratelimit-limit"] == "10"
        # Even the right password is refused from the throttled pair, before hashing.
        right = await attacker.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert right.status_code == 429
        # The owner on another network is not locked out by the attacker.
        mine = await owner.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert mine.status_code == 200


async def test_many_failures_from_anywhere_lock_silently(
    make_settings: Callable[..., Settings], smtp: SmtpServer
) -> None:
    settings = make_settings(limit_failures_per_account=5)
    async with serving(settings) as client:
        home = client("198.51.100.4")
        tokens = await signup_login(home)
        email = tokens["email"]
        wrong_answers = []
        for index in range(6):
            # A botnet: each attempt from another address, so no pair throttle triggers.
            http = client(f"203.0.113.{index + 10}")
            wrong_answers.append(
                await http.post("/v1/auth/login", json={"email": email, "password": WRONG})
            )
        locked = await client("203.0.113.99").post(
            "/v1/auth/login", json={"email": email, "password": PASSWORD}
        )
        wrong = wrong_answers[-1]
        # Byte-identical to a wrong password: status, body and headers.
        assert locked.status_code == wrong.status_code == 401
        assert locked.content == wrong.content
        assert {k: v for k, v in locked.headers.items() if k not in VOLATILE} == {
            k: v for k, v in wrong.headers.items() if k not in VOLATILE
        }
        # The lock holds on every pathway: the owner's refresh token stops working too.
        refreshed = await home.post(
            "/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert refreshed.status_code == 401
        password_change = await home.post(
            "/v1/me/password",
            json={"current_password": PASSWORD, "new_password": "another passphrase 42"},
            headers=bearer(tokens["access_token"]),
        )
        assert password_change.status_code == 403
        # The owner is mailed once for this lock, with a way out.
        notices = [
            mail
            for mail in await mails_to(smtp, email, count=2)
            if "locked" in str(mail["Subject"]).lower()
        ]
        assert len(notices) == 1
        # A password reset proves the owner and lifts the lock.
        await home.post("/v1/auth/password/forgot", json={"email": email})
        reset_mail = next(
            mail
            for mail in await mails_to(smtp, email, count=3)
            if "reset" in str(mail["Subject"]).lower()
        )
        done = await home.post(
            "/v1/auth/password/reset",
            json={"token": extract_token(reset_mail), "password": "another passphrase 42"},
        )
        assert done.status_code == 204
        unlocked = await home.post(
            "/v1/auth/login", json={"email": email, "password": "another passphrase 42"}
        )
        assert unlocked.status_code == 200


async def test_unknown_accounts_are_throttled_like_known_ones(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings()) as client:
        http = client("203.0.113.50")
        ghost = new_email()
        codes = [
            (
                await http.post("/v1/auth/login", json={"email": ghost, "password": WRONG})
            ).status_code
            for _ in range(11)
        ]
        assert codes == [401] * 10 + [429]


async def test_refresh_failures_are_throttled_per_ip(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings(limit_failures_per_account_ip=3)) as client:
        http = client("203.0.113.60")
        codes = [
            (await http.post("/v1/auth/refresh", json={"refresh_token": "A" * 43})).status_code
            for _ in range(4)
        ]
        assert codes == [401, 401, 401, 429]


async def test_one_time_token_guessing_is_throttled(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings(limit_failures_per_account_ip=3)) as client:
        http = client("203.0.113.61")
        codes = [
            (await http.post("/v1/auth/email/verify", json={"token": "B" * 43})).status_code
            for _ in range(4)
        ]
        assert codes == [400, 400, 400, 429]


async def test_signups_per_ip_are_limited(make_settings: Callable[..., Settings]) -> None:
    async with serving(make_settings(limit_signups_per_ip_per_hour=2)) as client:
        http = client("203.0.113.70")
        codes = [
            (
                await http.post(
                    "/v1/auth/signup", json={"email": new_email(), "password": PASSWORD}
                )
            ).status_code
            for _ in range(3)
        ]
        assert codes == [202, 202, 429]
        # Another address is not affected.
        other = await client("203.0.113.71").post(
            "/v1/auth/signup", json={"email": new_email(), "password": PASSWORD}
        )
        assert other.status_code == 202


async def test_every_credential_request_counts_toward_the_ip_ceiling(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings(limit_ip_per_minute=5)) as client:
        http = client("203.0.113.80")
        tokens = await signup_login(http)  # 2 requests
        for _ in range(3):
            ok = await http.post(
                "/v1/auth/login", json={"email": tokens["email"], "password": PASSWORD}
            )
            assert ok.status_code == 200
        ceiling = await http.post(
            "/v1/auth/login", json={"email": tokens["email"], "password": PASSWORD}
        )
        assert ceiling.status_code == 429
        # Non-credential routes are not part of this ceiling.
        me = await http.get("/v1/me", headers=bearer(tokens["access_token"]))
        assert me.status_code == 200
