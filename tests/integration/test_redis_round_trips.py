"""Shared-store round trips on the credential hot paths (issue 18 item 4).

With Redis every request is counted where it leaves the process: each packed command a
connection sends is one round trip (a script run, an MGET, a pipeline). On the embedded
backend the same bound holds for calls into the in-process stores.

The rate limits cost ONE round trip per credential request: the per-IP hit and the
account+IP check are one ``hit_and_peek`` script (it was a script for each). Whether a
signing key was revoked by another replica is remembered per process for a second at most
and forgotten the moment any replica revokes one (``signing_keys.deny_list``): a token
signed here (client_credentials, login, refresh) and a verified token without a session
(a client_credentials token at introspection) ask the deny-list nothing on a warm process
(each was one MGET). A verified token's session is asked about in one read
(``KeyManager.verify_session``). So: client_credentials, login and refresh 1 + 0,
``GET /v1/me`` 0 + 1, introspection 1 + 1 (a user's token) or 1 + 0 (a client's), the
JWKS 0. A count, never a time.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from redis.asyncio.connection import AbstractConnection

from conftest import SettingsFactory
from helpers import PASSWORD, bearer, lifespan, signup_login
from keyturn.app import create_app
from keyturn.infra.rate_limit import MemoryRateLimiter
from keyturn.infra.revocation import MemoryRevocationStore
from keyturn.services.signing_keys import deny_list
from oauth_helpers import register

pytestmark = pytest.mark.anyio

REQUESTS = 3
CC_CLIENT = {
    "client_name": "Round trips",
    "grant_types": ["client_credentials"],
    "response_types": [],
    "redirect_uris": [],
    "scope": "me:read",
    "token_endpoint_auth_method": "client_secret_basic",
}


def _first_word(command: Any) -> str:
    packed = command if isinstance(command, bytes | str) else b"".join(command)
    text = packed.decode(errors="replace") if isinstance(packed, bytes) else packed
    # RESP: *<n>\r\n$<len>\r\n<NAME>\r\n...
    parts = text.split("\r\n")
    return parts[2].upper() if len(parts) > 2 else text[:20]


# What each store call is, on either backend.
KIND = {
    "EVALSHA": "limits",
    "hit": "limits",
    "peek": "limits",
    "hit_and_peek": "limits",
    "reset": "limits",
    "MGET": "deny-list",
    "is_revoked": "deny-list",
    "revoked_among": "deny-list",
    "revoke": "deny-list",
    # Not a request's: each change feed pings its quiet subscription every second
    # (``invalidation.HEARTBEAT_SECONDS``), so a window longer than that on a slow machine
    # holds one per feed; no hot path sends a PING itself.
    "PING": "keep-alive",
}


@contextmanager
def store_round_trips(monkeypatch: pytest.MonkeyPatch, redis: bool) -> Iterator[list[str]]:
    """Every round trip to the shared stores while the block runs, by command name."""
    sent: list[str] = []
    if redis:
        real_send = AbstractConnection.send_packed_command

        async def counted_send(self: AbstractConnection, command: Any, *a: Any, **kw: Any) -> None:
            sent.append(_first_word(command))
            await real_send(self, command, *a, **kw)

        monkeypatch.setattr(AbstractConnection, "send_packed_command", counted_send)
    else:
        for owner, names in (
            (MemoryRateLimiter, ("hit", "peek", "hit_and_peek", "reset")),
            (MemoryRevocationStore, ("is_revoked", "revoked_among", "revoke")),
        ):
            for name in names:
                real: Callable[..., Awaitable[Any]] = getattr(owner, name)

                def counted(*args: Any, _real: Any = real, _name: str = name, **kw: Any) -> Any:
                    sent.append(_name)
                    return _real(*args, **kw)

                monkeypatch.setattr(owner, name, counted)
    try:
        yield sent
    finally:
        monkeypatch.undo()


def quiet(make_settings: SettingsFactory) -> Any:
    # Nothing in the background while round trips are counted.
    return make_settings(
        outbox_worker="off",
        key_rotation_check_seconds=86400,
        key_cache_seconds=3000,
        audit_seal_seconds=3600,
    )


@pytest.fixture
def uses_redis(backend: str) -> bool:
    return backend == "postgres" and bool(os.environ.get("KEYTURN_TEST_REDIS_URL"))


async def test_each_credential_hot_path_makes_its_bound_of_round_trips(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch, uses_redis: bool
) -> None:
    # A slow machine must not let the kid memory lapse between the warm-up and the count.
    monkeypatch.setattr(deny_list, "KID_MAX_AGE_SECONDS", 3600.0)
    settings = quiet(make_settings)
    application = create_app(settings)
    async with lifespan(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            created = await register(application, http, **CC_CLIENT)
            auth = httpx.BasicAuth(created["client_id"], created["client_secret"])
            tokens = await signup_login(http)
            email, refresh = tokens["email"], tokens["refresh_token"]
            me = bearer(tokens["access_token"])

            async def client_credentials() -> httpx.Response:
                return await http.post(
                    "/oauth2/token", data={"grant_type": "client_credentials"}, auth=auth
                )

            async def introspection() -> httpx.Response:
                answer = await http.post(
                    "/oauth2/introspect", data={"token": tokens["access_token"]}, auth=auth
                )
                assert answer.json()["active"] is True
                return answer

            issued = await client_credentials()
            client_token = issued.json()["access_token"]

            async def client_token_introspection() -> httpx.Response:
                answer = await http.post(
                    "/oauth2/introspect", data={"token": client_token}, auth=auth
                )
                assert answer.json()["active"] is True
                return answer

            async def login() -> httpx.Response:
                return await http.post(
                    "/v1/auth/login", json={"email": email, "password": PASSWORD}
                )

            async def rotate() -> httpx.Response:
                nonlocal refresh
                answer = await http.post("/v1/auth/refresh", json={"refresh_token": refresh})
                refresh = answer.json().get("refresh_token", refresh)
                return answer

            async def get_me() -> httpx.Response:
                return await http.get("/v1/me", headers=me)

            async def jwks() -> httpx.Response:
                return await http.get("/.well-known/jwks.json")

            requests: dict[str, Callable[[], Awaitable[httpx.Response]]] = {
                "client_credentials": client_credentials,
                "login": login,
                "refresh": rotate,
                "/v1/me": get_me,
                "introspection": introspection,
                "introspection of a client's token": client_token_introspection,
                "/.well-known/jwks.json": jwks,
            }
            counted: dict[str, list[str]] = {}
            for name, send in requests.items():
                # Warm-up: a new pooled connection's handshake is not a request's cost.
                assert (await send()).status_code == 200, name
                with store_round_trips(monkeypatch, uses_redis) as sent:
                    for _ in range(REQUESTS):
                        answer = await send()
                        assert answer.status_code == 200, (name, answer.text)
                counted[name] = sent
    # One signing key per algorithm, all asked about in one read.
    assert len(settings.signing_algorithms) > 1
    # (rate-limit round trips, deny-list round trips) per request.
    bounds = {
        "client_credentials": (1, 0),
        "login": (1, 0),
        "refresh": (1, 0),
        "/v1/me": (0, 1),
        "introspection": (1, 1),
        "introspection of a client's token": (1, 0),
        "/.well-known/jwks.json": (0, 0),
    }
    assert {name: _per_request(sent) for name, sent in counted.items()} == bounds, counted


def _per_request(sent: list[str]) -> tuple[int, int]:
    kinds = [KIND[command] for command in sent]  # nothing else goes to the stores
    limits, denials = kinds.count("limits"), kinds.count("deny-list")
    assert limits % REQUESTS == denials % REQUESTS == 0, sent
    return limits // REQUESTS, denials // REQUESTS
