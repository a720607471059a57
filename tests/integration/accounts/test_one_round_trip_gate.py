"""The per-IP ceiling when its hit is deferred to the credential guard (issue 18 item 4).

On the routes in ``api.http.throttling.DEFERRED_PATHS`` the per-IP hit joins the guard's
account+IP check in one round trip. These tests prove what that must never cost: a
request over the ceiling reaches no SQL statement, no password hash, no client secret
compare, no refresh token rotation and no token signature or verification; and a request
that never reaches a guard (a malformed body, an unknown grant) still counts, and over the
ceiling still answers 429.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from conftest import SettingsFactory
from helpers import PASSWORD, Peers, serving, signup_login
from keyturn.api.http.throttling import DEFERRED_PATHS
from keyturn.security.jose import Signer, Verifier
from keyturn.security.passwords import HashPool
from keyturn.services.accounts.refresh_rotation import RefreshRotation
from oauth_helpers import register
from sql_spy import statements_run_here

pytestmark = pytest.mark.anyio

CEILING = 4
ATTACKER = "203.0.113.50"
CC_CLIENT = {
    "client_name": "Gate",
    "grant_types": ["client_credentials"],
    "response_types": [],
    "redirect_uris": [],
    "scope": "me:read",
    "token_endpoint_auth_method": "client_secret_basic",
}


@contextmanager
def costly_work(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Names every costly step a request reaches: SQL, hashing, compares, JOSE."""
    reached: list[str] = []

    def spy(owner: Any, name: str, label: str) -> None:
        real: Callable[..., Any] = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            reached.append(label)
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)

    spy(HashPool, "verify", "password hash")
    spy(HashPool, "hash", "password hash")
    spy(Signer, "sign", "token signature")
    spy(Verifier, "verify", "token verification")
    spy(RefreshRotation, "rotate", "refresh token lookup")
    import keyturn.services.oauth2.clients as clients_module

    spy(clients_module, "constant_time_equals", "client secret compare")

    # Only this request's statements: the audit sealer's are not the request's work.
    with statements_run_here() as statements:
        yield reached
    reached.extend("sql" for _ in statements)


async def _use_up_the_ceiling(http: httpx.AsyncClient) -> None:
    # Cheap requests on an up-front route: each one counts, none reaches a guard.
    for _ in range(CEILING):
        answer = await http.post("/v1/auth/password/forgot", json={})
        assert answer.status_code == 422, answer.text


async def _good_requests(peers: Peers) -> dict[str, Callable[[httpx.AsyncClient], Any]]:
    """One valid request per deferred route, from a fresh address each time."""
    setup = peers("198.51.100.7")
    tokens = await signup_login(setup)
    created = await register(peers.app, setup, **CC_CLIENT)
    auth = httpx.BasicAuth(created["client_id"], created["client_secret"])
    access = tokens["access_token"]
    return {
        "/oauth2/token": lambda http: http.post(
            "/oauth2/token", data={"grant_type": "client_credentials"}, auth=auth
        ),
        "/oauth2/introspect": lambda http: http.post(
            "/oauth2/introspect", data={"token": access}, auth=auth
        ),
        "/oauth2/revoke": lambda http: http.post(
            "/oauth2/revoke", data={"token": "not a token of this client"}, auth=auth
        ),
        "/v1/auth/login": lambda http: http.post(
            "/v1/auth/login", json={"email": tokens["email"], "password": PASSWORD}
        ),
        "/v1/auth/refresh": lambda http: http.post(
            "/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        ),
    }


async def test_over_the_ceiling_no_deferred_route_reaches_any_costly_step(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serving(make_settings(limit_ip_per_minute=CEILING, outbox_worker="off")) as peers:
        requests = await _good_requests(peers)
        assert set(requests) == DEFERRED_PATHS  # every deferred route is proven here
        for index, (path, send) in enumerate(requests.items()):
            # Under the ceiling the same request does reach its work (the spies see it).
            with costly_work(monkeypatch) as reached:
                fine = await send(peers(f"198.51.100.{20 + index}"))
            assert fine.status_code == 200, (path, fine.text)
            # Not necessarily SQL: a warm client cache answers the OAuth routes without it.
            assert reached, path
            if path.startswith("/v1/"):
                assert "sql" in reached, (path, reached)  # the spy sees the request's SQL
            monkeypatch.undo()

            attacker = peers(f"203.0.113.{50 + index}")
            await _use_up_the_ceiling(attacker)
            with costly_work(monkeypatch) as reached:
                refused = await send(attacker)
            monkeypatch.undo()
            assert refused.status_code == 429, (path, refused.text)
            assert refused.headers["ratelimit-limit"] == str(CEILING)
            assert int(refused.headers["retry-after"]) >= 1
            assert reached == [], (path, reached)


@pytest.mark.parametrize(
    ("path", "send"),
    [
        # Not a form: refused before the client is known.
        ("/oauth2/token", lambda http: http.post("/oauth2/token", content=b"\xff")),
        # No client identification at all.
        ("/oauth2/introspect", lambda http: http.post("/oauth2/introspect", data={"x": "1"})),
        # Pydantic refuses the body before the service (and its guard) runs.
        ("/v1/auth/login", lambda http: http.post("/v1/auth/login", json={"email": 1})),
        ("/v1/auth/refresh", lambda http: http.post("/v1/auth/refresh", json={})),
    ],
)
async def test_requests_that_never_reach_a_guard_still_count(
    make_settings: SettingsFactory,
    path: str,
    send: Callable[[httpx.AsyncClient], Any],
) -> None:
    async with serving(make_settings(limit_ip_per_minute=3)) as peers:
        http = peers(ATTACKER)
        first = [(await send(http)).status_code for _ in range(3)]
        assert all(400 <= code < 500 and code != 429 for code in first), first
        # The fourth is over the ceiling: 429 replaces the error it would have had.
        over = await send(http)
        assert over.status_code == 429, over.text
        assert int(over.headers["retry-after"]) >= 1
        # Another address is not affected.
        assert (await send(peers("198.51.100.99"))).status_code == first[0]


async def test_unknown_grant_counts_once_through_the_guard(make_settings: SettingsFactory) -> None:
    async with serving(make_settings(limit_ip_per_minute=3)) as peers:
        created = await register(peers.app, peers("198.51.100.7"), **CC_CLIENT)
        auth = httpx.BasicAuth(created["client_id"], created["client_secret"])
        http = peers(ATTACKER)
        codes = [
            (
                await http.post("/oauth2/token", data={"grant_type": "password"}, auth=auth)
            ).status_code
            for _ in range(4)
        ]
        # Counted at the client's guard, not again at the end: three fit under three.
        assert codes == [400, 400, 400, 429]
