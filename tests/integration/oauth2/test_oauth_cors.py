"""CORS for browser clients on the OAuth endpoints (DESIGN.md section 3): a preflight is
answered for an origin some client registered; an actual answer is readable only by an
origin of the client concerned; /oauth2/authorize never gets CORS."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from conftest import SettingsFactory
from helpers import bearer, running_app
from oauth_helpers import basic, grant, register

pytestmark = pytest.mark.anyio
SPA = "https://spa.example.com"
OTHER_SPA = "https://other.example.com"
STRANGER = "https://evil.example.net"


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type",
    }


@pytest.fixture
async def clients(app: FastAPI, client: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, Any]]:
    spa = await register(app, client, allowed_cors_origins=[SPA])
    other = await register(app, client, allowed_cors_origins=[OTHER_SPA])
    return spa, other


async def test_preflight_for_registered_origins_only(
    client: httpx.AsyncClient, clients: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    for path in ("/oauth2/token", "/oauth2/userinfo", "/oauth2/revoke"):
        for origin in (SPA, OTHER_SPA):
            answer = await client.options(path, headers=preflight(origin))
            assert answer.status_code == 204, (path, origin)
            assert answer.headers["access-control-allow-origin"] == origin
            assert "POST" in answer.headers["access-control-allow-methods"]
            assert "access-control-allow-credentials" not in answer.headers
        refused = await client.options(path, headers=preflight(STRANGER))
        assert "access-control-allow-origin" not in refused.headers
    for path in ("/oauth2/authorize", "/oauth2/introspect", "/v1/me"):
        answer = await client.options(path, headers=preflight(SPA, "GET"))
        assert "access-control-allow-origin" not in answer.headers, path


async def test_revoke_answer_readable_only_by_the_clients_origin(
    client: httpx.AsyncClient, clients: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    spa, _ = clients
    auth = basic(spa)
    own = await client.post(
        "/oauth2/revoke", data={"token": "x"}, auth=auth, headers={"Origin": SPA}
    )
    assert own.headers["access-control-allow-origin"] == SPA
    assert "origin" in own.headers["vary"].lower()
    for origin in (OTHER_SPA, STRANGER):
        answer = await client.post(
            "/oauth2/revoke", data={"token": "x"}, auth=auth, headers={"Origin": origin}
        )
        assert answer.status_code == 200
        assert "access-control-allow-origin" not in answer.headers


async def test_token_answer_readable_only_by_the_clients_origin(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    machine = await register(
        app,
        client,
        allowed_cors_origins=[SPA],
        redirect_uris=[],
        grant_types=["client_credentials"],
        response_types=[],
        scope="me:read",
    )
    auth = basic(machine)
    form = {"grant_type": "client_credentials"}
    own = await client.post("/oauth2/token", data=form, auth=auth, headers={"Origin": SPA})
    assert own.status_code == 200, own.text
    assert own.headers["access-control-allow-origin"] == SPA
    assert "origin" in own.headers["vary"].lower()
    for origin in (OTHER_SPA, STRANGER):
        answer = await client.post(
            "/oauth2/token", data=form, auth=auth, headers={"Origin": origin}
        )
        assert answer.status_code == 200
        assert "access-control-allow-origin" not in answer.headers


async def test_userinfo_answer_readable_only_by_the_tokens_client_origin(
    app: FastAPI, client: httpx.AsyncClient, clients: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    spa, _ = clients
    access_token = (await grant(app, spa, "openid")).access_token
    own = await client.get("/oauth2/userinfo", headers={**bearer(access_token), "Origin": SPA})
    assert own.status_code == 200
    assert own.headers["access-control-allow-origin"] == SPA
    for origin in (OTHER_SPA, STRANGER):
        answer = await client.get(
            "/oauth2/userinfo", headers={**bearer(access_token), "Origin": origin}
        )
        assert answer.status_code == 200
        assert "access-control-allow-origin" not in answer.headers


async def test_first_party_allow_list_still_works(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(cors_origins=["https://console.example.com"])) as http:
        answer = await http.options(
            "/v1/me", headers=preflight("https://console.example.com", "GET")
        )
        assert answer.headers["access-control-allow-origin"] == "https://console.example.com"
