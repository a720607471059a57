"""Issue 4 acceptance against `keyturn serve` with default limits and real argon2.

v5.0.0-6.3.1 (throttling), v5.0.0-6.3.4 (lockout on every pathway), authentik
CVE-2024-47070 (a spoofed X-Forwarded-For must not change the throttling key).
"""

from __future__ import annotations

import httpx
import pytest

from e2e.conftest import StartServer
from helpers import PASSWORD, new_email

pytestmark = pytest.mark.slow

WRONG = "not the right password"
VOLATILE = {"date", "x-request-id"}


def attempt(http: httpx.Client, email: str, password: str, ip: str | None) -> httpx.Response:
    headers = {"X-Forwarded-For": ip} if ip else {}
    return http.post("/v1/auth/login", json={"email": email, "password": password}, headers=headers)


def signup(http: httpx.Client) -> str:
    email = new_email()
    answer = http.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 202, answer.text
    return email


def test_eleventh_failure_is_throttled_and_other_ips_still_log_in(
    start_server: StartServer,
) -> None:
    # A reverse proxy on loopback forwards the client address.
    server = start_server({"KEYTURN_TRUSTED_PROXIES": "127.0.0.1"})
    with server.client() as http:
        email = signup(http)
        for _ in range(10):
            assert attempt(http, email, WRONG, "203.0.113.7").status_code == 401
        blocked = attempt(http, email, WRONG, "203.0.113.7")
        assert blocked.status_code == 429
        assert int(blocked.headers["retry-after"]) >= 1
        assert blocked.json()["code"] == "rate_limited"
        # The owner, elsewhere, still logs in with the right password.
        assert attempt(http, email, PASSWORD, "198.51.100.23").status_code == 200


def test_spoofed_forwarded_for_from_an_untrusted_peer_does_not_escape(
    start_server: StartServer,
) -> None:
    server = start_server()  # no trusted proxies: X-Forwarded-For is ignored
    with server.client() as http:
        email = signup(http)
        codes = [
            attempt(http, email, WRONG, f"198.51.100.{index}").status_code for index in range(11)
        ]
        assert codes == [401] * 10 + [429]


def test_locked_account_answers_exactly_like_a_wrong_password(
    start_server: StartServer,
) -> None:
    """100 failures within the hour from 10 addresses lock the account (default limits)."""
    server = start_server({"KEYTURN_TRUSTED_PROXIES": "127.0.0.1"})
    with server.client() as http:
        email = signup(http)
        wrong = None
        for index in range(101):
            # Ten tries per address stays under the per account+IP throttle.
            wrong = attempt(http, email, WRONG, f"203.0.113.{index // 10 + 1}")
            assert wrong.status_code == 401
        locked = attempt(http, email, PASSWORD, "198.51.100.99")
        assert wrong is not None
        assert locked.status_code == wrong.status_code == 401
        assert locked.content == wrong.content
        assert {k: v for k, v in locked.headers.items() if k not in VOLATILE} == {
            k: v for k, v in wrong.headers.items() if k not in VOLATILE
        }
