"""``POST /oauth2/introspect`` (RFC 7662): who may ask, what an active answer holds, and
that everything else is the bare ``{"active": false}`` (section 2.2)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from conftest import SettingsFactory
from helpers import bearer, running_app, signup_login
from keyturn.domain import ClientInfo
from keyturn.errors import InvalidRefreshToken
from oauth_grants import (
    Grant,
    admin_headers,
    basic,
    issue_grant,
    mint_access_token,
    new_user,
    register_client,
)

pytestmark = pytest.mark.anyio
INTROSPECT = "/oauth2/introspect"
HERE = ClientInfo(ip="203.0.113.20")


@pytest.fixture
async def admin(app: FastAPI, client: httpx.AsyncClient) -> dict[str, str]:
    return await admin_headers(app, client)


@pytest.fixture
async def web(client: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, Any]:
    return await register_client(client, admin)


@pytest.fixture
async def grant(app: FastAPI, client: httpx.AsyncClient, web: dict[str, Any]) -> Grant:
    user = await new_user(client, app.state.services, name="Ada")
    return await issue_grant(
        app.state.services, client_id=web["client_id"], user=user, scope="openid offline_access"
    )


async def introspect(
    client: httpx.AsyncClient, caller: dict[str, Any], token: str, **extra: str
) -> dict[str, Any]:
    answer = await client.post(
        INTROSPECT,
        data={"token": token, **extra},
        headers=basic(caller["client_id"], caller["client_secret"]),
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body: dict[str, Any] = answer.json()
    return body


async def test_client_authentication_is_required(
    client: httpx.AsyncClient, admin: dict[str, str], web: dict[str, Any], grant: Grant
) -> None:
    public = await register_client(
        client, admin, token_endpoint_auth_method="none", grant_types=["authorization_code"]
    )
    attempts: list[dict[str, Any]] = [
        {"data": {"token": grant.access_token}},
        {"data": {"token": grant.access_token, "client_id": public["client_id"]}},
        {"data": {"token": grant.access_token}, "headers": basic(web["client_id"], "wrong")},
        {"data": {"token": grant.access_token}, "headers": basic("unknown-client", "secret")},
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
    assert body["scope"] == "openid offline_access"
    assert body["iss"] == "http://127.0.0.1:8000"
    assert {"exp", "iat", "nbf", "jti"} <= body.keys()
    # Identifiers only: no personal data (username, email, name) in introspection.
    assert not {"username", "email", "name"} & body.keys()


async def test_client_secret_post_and_the_hint_is_only_a_hint(
    client: httpx.AsyncClient, admin: dict[str, str], grant: Grant
) -> None:
    poster = await register_client(client, admin, token_endpoint_auth_method="client_secret_post")
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
    client: httpx.AsyncClient, admin: dict[str, str], web: dict[str, Any], grant: Grant
) -> None:
    resource_server = await register_client(client, admin, client_name="API")
    assert (await introspect(client, resource_server, grant.access_token))["active"] is True
    assert await introspect(client, resource_server, grant.refresh_token) == {"active": False}
    own = await introspect(client, web, grant.refresh_token)
    assert own["active"] is True
    assert own["token_type"] == "refresh_token"
    assert own["client_id"] == web["client_id"]
    assert own["sub"] == str(grant.user_id)
    assert own["sid"] == str(grant.session_id)
    assert own["scope"] == "openid offline_access"


async def test_rotated_refresh_token_is_inactive_even_within_the_grace(
    app: FastAPI, client: httpx.AsyncClient, web: dict[str, Any], grant: Grant
) -> None:
    # Rotation through the one rotation code path, as the token endpoint calls it; the
    # first-party refresh refuses a grant's token (it is bound to its client).
    with pytest.raises(InvalidRefreshToken):
        await app.state.services.auth.refresh(grant.refresh_token, HERE)
    _, _, successor = await app.state.services.auth.rotate(
        grant.refresh_token, HERE, client_id=grant.client_id
    )
    assert await introspect(client, web, grant.refresh_token) == {"active": False}
    assert (await introspect(client, web, successor))["active"] is True


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
    expired = mint_access_token(
        services,
        client_id=web["client_id"],
        subject=str(grant.user_id),
        sid=grant.session_id,
        scope="openid",
        issued=1_700_000_000,
    )
    not_yet = mint_access_token(
        services,
        client_id=web["client_id"],
        subject=str(grant.user_id),
        sid=grant.session_id,
        scope="openid",
        issued=2_000_000_000,
    )
    head, payload, signature = grant.access_token.split(".")
    tampered = f"{head}.{payload}.{signature[:-4]}AAAA"
    id_token = services.id_tokens.sign(
        {
            "iss": "http://127.0.0.1:8000",
            "sub": "x",
            "aud": web["client_id"],
            "exp": 2**31,
            "iat": 1,
            "client_id": web["client_id"],
            "sid": str(grant.session_id),
        }
    )
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
    for token in (
        expired,
        not_yet,
        tampered,
        id_token,
        wrong_aud,
        "garbage",
        "A" * 43,
        grant.refresh_token + "x",
        str(uuid.uuid4()),
    ):
        assert await introspect(client, web, token) == {"active": False}, token


async def test_missing_token_is_invalid_request(
    client: httpx.AsyncClient, web: dict[str, Any]
) -> None:
    answer = await client.post(
        INTROSPECT, data={}, headers=basic(web["client_id"], web["client_secret"])
    )
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
