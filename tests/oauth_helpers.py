"""Shared steps of the OAuth code-flow tests: clients, sign-in, PKCE, authorize, token."""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
from fastapi import FastAPI

from helpers import PASSWORD, bearer, csrf_from, new_email, ui_login

REDIRECT = "https://app.example.com/cb"
WEB_CLIENT: dict[str, Any] = {
    "client_name": "Example App",
    "redirect_uris": [REDIRECT],
    "grant_types": ["authorization_code", "refresh_token"],
    "scope": "openid profile email offline_access me:read",
    "token_endpoint_auth_method": "client_secret_basic",
}


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def admin_headers(app: FastAPI, client: httpx.AsyncClient) -> dict[str, str]:
    email = f"admin-{uuid.uuid4().hex[:12]}@example.com"
    await app.state.services.users.create_admin(email, PASSWORD)
    answer = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return bearer(answer.json()["access_token"])


async def register(app: FastAPI, client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    """A registered client (the answer carries ``client_secret`` when confidential)."""
    # A separate client: the admin's API login must not touch the browser's cookies.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as admin:
        headers = await admin_headers(app, admin)
        answer = await admin.post("/v1/admin/clients", json={**WEB_CLIENT, **body}, headers=headers)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


async def signed_in(client: httpx.AsyncClient) -> str:
    """A fresh account signed in through /ui/login (the client keeps the cookie)."""
    email = new_email()
    answer = await client.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 202, answer.text
    login = await ui_login(client, email)
    assert login.status_code == 303, login.text
    return email


def query_of(location: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(location).query, keep_blank_values=True))


def auth_params(oauth_client: dict[str, Any], **extra: str | None) -> dict[str, str]:
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": oauth_client["client_id"],
        "redirect_uri": oauth_client["redirect_uris"][0],
        "scope": "openid",
        "state": "st-" + secrets.token_hex(4),
        **extra,
    }
    return {name: value for name, value in params.items() if value is not None}


async def consent(client: httpx.AsyncClient, location: str, decision: str) -> httpx.Response:
    """Opens the consent page at ``location`` and answers it."""
    page = await client.get(location)
    assert page.status_code == 200, page.text
    fields = dict(parse_qsl(urlsplit(location).query, keep_blank_values=True))
    return await client.post(
        "/ui/consent",
        data={"csrf_token": csrf_from(page.text), "decision": decision, **fields},
    )


async def code_for(
    client: httpx.AsyncClient, oauth_client: dict[str, Any], **extra: str | None
) -> tuple[str, dict[str, str]]:
    """Runs /oauth2/authorize (consenting when asked); returns the code and the answer."""
    answer = await client.get("/oauth2/authorize", params=auth_params(oauth_client, **extra))
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    if location.startswith("/ui/consent"):
        answer = await consent(client, location, "allow")
        assert answer.status_code == 303, answer.text
        location = answer.headers["location"]
    query = query_of(location)
    assert "code" in query, location
    return query["code"], query


def basic(oauth_client: dict[str, Any]) -> httpx.BasicAuth:
    return httpx.BasicAuth(oauth_client["client_id"], oauth_client["client_secret"])


async def token(
    client: httpx.AsyncClient, oauth_client: dict[str, Any], **form: str
) -> httpx.Response:
    """``POST /oauth2/token`` authenticated as the client (Basic, or public ``client_id``)."""
    if oauth_client.get("client_secret"):
        return await client.post("/oauth2/token", data=form, auth=basic(oauth_client))
    return await client.post("/oauth2/token", data={"client_id": oauth_client["client_id"], **form})
