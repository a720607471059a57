"""Shared steps of the OAuth code-flow tests: clients, sign-in, PKCE, authorize, token."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import jwt
from fastapi import FastAPI

from helpers import PASSWORD, admin_headers, csrf_from, new_email, ui_login
from keyturn.domain import utcnow

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


async def signed_in(client: httpx.AsyncClient, *, name: str | None = None) -> str:
    """A fresh account (named ``name`` if given) signed in through /ui/login (the client
    keeps the cookie)."""
    email = new_email()
    account: dict[str, str] = {"email": email, "password": PASSWORD}
    if name is not None:
        account["name"] = name
    answer = await client.post("/v1/auth/signup", json=account)
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


async def redeem(
    client: httpx.AsyncClient,
    oauth_client: dict[str, Any],
    code: str,
    verifier: str | None = None,
    **extra: str,
) -> httpx.Response:
    """The authorization code at /oauth2/token, for ``REDIRECT`` (``extra`` adds or
    replaces form fields)."""
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, **extra}
    if verifier is not None:
        form["code_verifier"] = verifier
    return await token(client, oauth_client, **form)


async def introspect(client: httpx.AsyncClient, caller: dict[str, Any], value: str) -> Any:
    """``POST /oauth2/introspect`` as the client ``caller``; the answer's JSON."""
    answer = await client.post("/oauth2/introspect", data={"token": value}, auth=basic(caller))
    assert answer.status_code == 200, answer.text
    return answer.json()


async def authorize_and_redeem(
    client: httpx.AsyncClient, oauth_client: dict[str, Any], **extra: str | None
) -> httpx.Response:
    """/oauth2/authorize with PKCE S256 for the signed-in browser (consenting when asked),
    then the code at /oauth2/token; the token endpoint's answer."""
    verifier, challenge = pkce_pair()
    code, _ = await code_for(
        client, oauth_client, code_challenge=challenge, code_challenge_method="S256", **extra
    )
    return await redeem(
        client, oauth_client, code, verifier, redirect_uri=oauth_client["redirect_uris"][0]
    )


async def verify_id_token(
    client: httpx.AsyncClient, id_token: str, audience: str, issuer: str, alg: str = "RS256"
) -> dict[str, Any]:
    """Verifies ``id_token`` the way a relying party does: PyJWT (independent of the
    signing code), the key chosen by ``kid`` from the served JWKS."""
    header = jwt.get_unverified_header(id_token)
    assert header["alg"] == alg, header
    answer = await client.get("/.well-known/jwks.json")
    assert answer.status_code == 200, answer.text
    matching = [key for key in answer.json()["keys"] if key.get("kid") == header["kid"]]
    assert len(matching) == 1, (header, matching)
    public = jwt.PyJWK.from_json(json.dumps(matching[0]))
    claims: dict[str, Any] = jwt.decode(
        id_token,
        public.key,
        algorithms=[alg],
        audience=audience,
        issuer=issuer,
        options={"require": ["iss", "sub", "aud", "exp", "iat"]},
    )
    return claims


@dataclass(frozen=True)
class Grant:
    """One finished code flow for a fresh user.

    ``body`` is the token endpoint's answer. ``user_id`` and ``session_id`` (the grant
    session /oauth2/token opened) are read from the database, not from the tokens, so a
    test comparing them with what an endpoint reports checks something independent.
    """

    client_id: str
    email: str
    user_id: uuid.UUID
    session_id: uuid.UUID
    body: dict[str, Any]

    @property
    def access_token(self) -> str:
        return str(self.body["access_token"])

    @property
    def refresh_token(self) -> str:
        assert "refresh_token" in self.body, "no refresh token: offline_access not granted"
        return str(self.body["refresh_token"])

    @property
    def id_token(self) -> str:
        assert "id_token" in self.body, "no ID Token: openid not granted"
        return str(self.body["id_token"])

    @property
    def scope(self) -> str:
        return str(self.body["scope"])


async def grant(
    app: FastAPI, oauth_client: dict[str, Any], scope: str, *, name: str | None = None
) -> Grant:
    """Runs the real code flow for a fresh account in a browser of its own: sign-up,
    /ui/login, /oauth2/authorize with PKCE S256, the consent page, /oauth2/token.

    Its own cookie jar: the caller's client keeps whatever session it had.
    """
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as browser:
        email = await signed_in(browser, name=name)
        answer = await authorize_and_redeem(browser, oauth_client, scope=scope)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    now = utcnow()
    async with app.state.services.auth._uow_factory() as uow:
        user = await uow.users.get_by_email(email)
        assert user is not None
        sessions = await uow.sessions.list_active(
            user.id, now, idle_since=now - timedelta(days=1), limit=10, after=None
        )
    # The browser session has no client_id; the grant session names the client.
    (grant_session,) = [s for s in sessions if s.client_id == oauth_client["client_id"]]
    return Grant(
        client_id=oauth_client["client_id"],
        email=email,
        user_id=user.id,
        session_id=grant_session.id,
        body=body,
    )
