"""``POST /oauth2/introspect`` (RFC 7662): who may ask, what an active answer holds, and
that everything else is the bare ``{"active": false}`` (section 2.2).

Every token under test comes from the real code flow (``oauth_helpers.grant``); the
forged ones are made here, as an attacker would."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
import time_machine
from fastapi import FastAPI

from conftest import SettingsFactory
from helpers import bearer, running_app, signup_login
from keyturn.domain import utcnow
from keyturn.security.jose import Signer
from keyturn.security.keys import generate_key
from oauth_helpers import Grant, basic, register, token
from oauth_helpers import grant as code_flow_grant

pytestmark = pytest.mark.anyio
INTROSPECT = "/oauth2/introspect"
SCOPE = "offline_access openid"  # as the token endpoint writes it: sorted


@pytest.fixture
async def web(app: FastAPI, client: httpx.AsyncClient) -> dict[str, Any]:
    return await register(app, client)


@pytest.fixture
async def grant(app: FastAPI, web: dict[str, Any]) -> Grant:
    return await code_flow_grant(app, web, "openid offline_access", name="Ada")


async def introspect(
    client: httpx.AsyncClient, caller: dict[str, Any], token: str, **extra: str
) -> dict[str, Any]:
    answer = await client.post(INTROSPECT, data={"token": token, **extra}, auth=basic(caller))
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body: dict[str, Any] = answer.json()
    return body


async def test_client_authentication_is_required(
    app: FastAPI, client: httpx.AsyncClient, web: dict[str, Any], grant: Grant
) -> None:
    public = await register(
        app, client, token_endpoint_auth_method="none", grant_types=["authorization_code"]
    )
    wrong_secret = httpx.BasicAuth(web["client_id"], "wrong")
    unknown = httpx.BasicAuth("unknown-client", "secret")
    attempts: list[dict[str, Any]] = [
        {"data": {"token": grant.access_token}},
        {"data": {"token": grant.access_token, "client_id": public["client_id"]}},
        {"data": {"token": grant.access_token}, "auth": wrong_secret},
        {"data": {"token": grant.access_token}, "auth": unknown},
    ]
    for attempt in attempts:
        answer = await client.post(INTROSPECT, **attempt)
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"] == "invalid_client"
        assert answer.headers["www-authenticate"].startswith("Basic")
        assert answer.headers["cache-control"] == "no-store"


async def test_active_access_token_answer(
    client: httpx.AsyncClient, web: dict[str, Any], grant: Grant
) -> None:
    body = await introspect(client, web, grant.access_token)
    assert body["active"] is True
    assert body["token_type"] == "access_token"
    assert body["client_id"] == body["aud"] == web["client_id"]
    assert body["sub"] == str(grant.user_id)
    assert body["sid"] == str(grant.session_id)
    assert body["scope"] == SCOPE
    assert body["iss"] == "http://127.0.0.1:8000"
    assert {"exp", "iat", "nbf", "jti"} <= body.keys()
    # Identifiers only: no personal data (username, email, name) in introspection.
    assert not {"username", "email", "name"} & body.keys()


async def test_client_secret_post_and_the_hint_is_only_a_hint(
    app: FastAPI, client: httpx.AsyncClient, grant: Grant
) -> None:
    poster = await register(app, client, token_endpoint_auth_method="client_secret_post")
    form = {
        "client_id": poster["client_id"],
        "client_secret": poster["client_secret"],
        "token": grant.access_token,
        "token_type_hint": "refresh_token",
    }
    answer = await client.post(INTROSPECT, data=form)
    assert answer.json()["active"] is True
    # An unknown hint value is no error either (section 2.1: the search is extended).
    bogus = await client.post(INTROSPECT, data={**form, "token_type_hint": "bogus"})
    assert bogus.json()["token_type"] == "access_token"


async def test_access_tokens_of_any_client_but_refresh_tokens_only_of_its_own(
    app: FastAPI, client: httpx.AsyncClient, web: dict[str, Any], grant: Grant
) -> None:
    resource_server = await register(app, client, client_name="API")
    assert (await introspect(client, resource_server, grant.access_token))["active"] is True
    assert await introspect(client, resource_server, grant.refresh_token) == {"active": False}
    own = await introspect(client, web, grant.refresh_token)
    assert own["active"] is True
    assert own["token_type"] == "refresh_token"
    assert own["client_id"] == web["client_id"]
    assert own["sub"] == str(grant.user_id)
    assert own["sid"] == str(grant.session_id)
    assert own["scope"] == SCOPE


async def test_rotated_refresh_token_is_inactive_even_within_the_grace(
    client: httpx.AsyncClient, web: dict[str, Any], grant: Grant
) -> None:
    # The first-party refresh refuses a grant's token (it is bound to its client) and
    # leaves the grant alone.
    first_party = await client.post("/v1/auth/refresh", json={"refresh_token": grant.refresh_token})
    assert first_party.status_code == 401, first_party.text
    assert (await introspect(client, web, grant.refresh_token))["active"] is True
    # The clock stands still: the retry below must fall inside the reuse grace.
    with time_machine.travel(utcnow(), tick=False):
        rotated = await token(
            client, web, grant_type="refresh_token", refresh_token=grant.refresh_token
        )
        assert rotated.status_code == 200, rotated.text
        successor = rotated.json()["refresh_token"]
        assert successor != grant.refresh_token
        assert await introspect(client, web, grant.refresh_token) == {"active": False}
        assert (await introspect(client, web, successor))["active"] is True
        # Within the reuse grace the predecessor only returns that same successor
        # (DESIGN.md section 4); it is still not an active token of its own.
        retry = await token(
            client, web, grant_type="refresh_token", refresh_token=grant.refresh_token
        )
        assert retry.status_code == 200, retry.text
        assert retry.json()["refresh_token"] == successor
        assert await introspect(client, web, grant.refresh_token) == {"active": False}


async def test_first_party_tokens(client: httpx.AsyncClient, web: dict[str, Any]) -> None:
    login = await signup_login(client)
    body = await introspect(client, web, login["access_token"])
    assert body["active"] is True
    assert body["client_id"] == body["aud"] == "keyturn"
    # A first-party refresh token is never visible to an OAuth client.
    assert await introspect(client, web, login["refresh_token"]) == {"active": False}
    await client.post("/v1/auth/logout", headers=bearer(login["access_token"]))
    assert await introspect(client, web, login["access_token"]) == {"active": False}


async def test_revoked_grant_is_inactive(
    app: FastAPI, client: httpx.AsyncClient, web: dict[str, Any], grant: Grant
) -> None:
    await app.state.services.access_tokens.deny([grant.session_id])
    assert await introspect(client, web, grant.access_token) == {"active": False}


async def test_invalid_tokens_are_inactive(
    app: FastAPI, client: httpx.AsyncClient, web: dict[str, Any], grant: Grant
) -> None:
    services = app.state.services
    head, payload, signature = grant.access_token.split(".")
    tampered = f"{head}.{payload}.{signature[:-4]}AAAA"
    # The same claims, alg and kid, signed with a key of the attacker's.
    claims = jwt.decode(grant.access_token, options={"verify_signature": False})
    header = jwt.get_unverified_header(grant.access_token)
    foreign = dataclasses.replace(generate_key(header["alg"]), kid=header["kid"])
    forged = Signer(foreign).sign(claims, typ="at+jwt")
    # Signed by the server's own key but for an audience that is no client of the grant.
    wrong_aud = services.keys.sign(
        {
            "iss": "http://127.0.0.1:8000",
            "sub": "x",
            "aud": "other",
            "exp": 2**31,
            "iat": 1,
            "client_id": web["client_id"],
            "sid": str(grant.session_id),
        },
        typ="at+jwt",
    )
    for token_value in (
        tampered,
        forged,
        grant.id_token,  # a real ID Token is never an access token
        wrong_aud,
        "garbage",
        "A" * 43,
        grant.refresh_token + "x",
        str(uuid.uuid4()),
    ):
        assert await introspect(client, web, token_value) == {"active": False}, token_value


async def test_expired_and_not_yet_valid_access_tokens_are_inactive(
    client: httpx.AsyncClient, web: dict[str, Any], grant: Grant
) -> None:
    """The clock moves, not the token: past ``exp`` it is inactive, and before its
    ``nbf``/``iat`` (a verifier whose clock is behind) too; no leeway either way."""
    assert (await introspect(client, web, grant.access_token))["active"] is True
    lifetime = int(grant.body["expires_in"])
    with time_machine.travel(utcnow() + timedelta(seconds=lifetime + 1), tick=True):
        assert await introspect(client, web, grant.access_token) == {"active": False}
        # Expiry of the access token says nothing about the grant: its refresh token lives.
        assert (await introspect(client, web, grant.refresh_token))["active"] is True
    with time_machine.travel(utcnow() - timedelta(seconds=60), tick=True):
        assert await introspect(client, web, grant.access_token) == {"active": False}


async def test_missing_token_is_invalid_request(
    client: httpx.AsyncClient, web: dict[str, Any]
) -> None:
    answer = await client.post(INTROSPECT, data={}, auth=basic(web))
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request"


async def test_per_ip_ceiling(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(limit_ip_per_minute=3)) as http:
        codes = [
            (await http.post(path, data={"token": "x"})).status_code
            for path in (INTROSPECT, INTROSPECT, "/oauth2/revoke", INTROSPECT)
        ]
    # Every request counts, whatever its outcome (DESIGN.md section 5).
    assert codes == [401, 401, 401, 429]
