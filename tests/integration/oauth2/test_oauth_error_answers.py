"""Error answers of the browser-facing OAuth endpoints: readable by browser clients, and
the RFC 6750 challenge on userinfo.

A single-page app calls /oauth2/token, /oauth2/revoke and /oauth2/userinfo by script;
without ``Access-Control-Allow-Origin`` on an *error* answer its code sees only a network
failure, never ``invalid_grant``. Errors are readable by any origin some client registered
(the failing client is often unknown), never by other origins.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from helpers import bearer
from oauth_helpers import register

pytestmark = pytest.mark.anyio

SPA = "https://spa.example.com"
STRANGER = "https://evil.example"


async def spa_client(app: FastAPI, client: httpx.AsyncClient) -> dict[str, Any]:
    return await register(
        app,
        client,
        token_endpoint_auth_method="none",
        redirect_uris=[f"{SPA}/callback"],
        allowed_cors_origins=[SPA],
    )


def readable_by(answer: httpx.Response, origin: str) -> bool:
    return answer.headers.get("access-control-allow-origin") == origin


async def test_token_and_revoke_errors_are_readable_by_registered_origins(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    spa = await spa_client(app, client)
    requests = [
        (
            "/oauth2/token",
            {"grant_type": "authorization_code", "code": "x" * 43, "client_id": spa["client_id"]},
            "invalid_grant",
        ),
        ("/oauth2/token", {"grant_type": "password", "client_id": spa["client_id"]}, None),
        # An unknown client: nobody to ask about origins but the registry of all clients.
        ("/oauth2/token", {"grant_type": "client_credentials", "client_id": "nobody"}, None),
        ("/oauth2/revoke", {"client_id": spa["client_id"]}, "invalid_request"),
    ]
    for path, form, error in requests:
        for origin, readable in ((SPA, True), (STRANGER, False)):
            answer = await client.post(path, data=form, headers={"Origin": origin})
            assert 400 <= answer.status_code < 500, (path, form, answer.text)
            if error is not None:
                assert answer.json()["error"] == error
            assert readable_by(answer, origin) is readable, (path, form, origin)
            assert "Origin" in answer.headers["vary"]


async def test_userinfo_errors_carry_the_bearer_challenge_and_cors(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await spa_client(app, client)
    # RFC 6750 section 2: the token in two ways at once is invalid_request (400), and
    # section 3 puts the error in the challenge.
    both = await client.post(
        "/oauth2/userinfo",
        data={"access_token": "a.b.c"},
        headers={**bearer("a.b.c"), "Origin": SPA},
    )
    assert both.status_code == 400, both.text
    assert both.json()["error"] == "invalid_request"
    assert both.headers["www-authenticate"].startswith('Bearer error="invalid_request"')
    assert readable_by(both, SPA)

    refused = await client.get("/oauth2/userinfo", headers={**bearer("a.b.c"), "Origin": SPA})
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert readable_by(refused, SPA)
    stranger = await client.get("/oauth2/userinfo", headers={**bearer("a.b.c"), "Origin": STRANGER})
    assert not readable_by(stranger, STRANGER)


async def test_errors_elsewhere_get_no_client_cors(app: FastAPI, client: httpx.AsyncClient) -> None:
    await spa_client(app, client)
    # /oauth2/introspect is server to server (never in CORS_PATHS): no browser reads it.
    answer = await client.post("/oauth2/introspect", data={"token": "x"}, headers={"Origin": SPA})
    assert answer.status_code == 401
    assert not readable_by(answer, SPA)
