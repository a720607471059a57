"""``GET|POST /oauth2/logout`` (OpenID Connect RP-Initiated Logout 1.0): a valid hint for
the signed-in user ends the session; anything else asks first; the redirect goes only to
an exactly registered URI.

Every id_token_hint is an ID Token the provider issued through the real code flow; the
forged ones are made here, as an attacker would."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
import time_machine
from fastapi import FastAPI

from helpers import csrf_from
from keyturn.domain import utcnow
from keyturn.security.jose import Signer
from keyturn.security.keys import generate_key
from oauth_helpers import REDIRECT, code_for, grant, pkce_pair, register, signed_in, token

pytestmark = pytest.mark.anyio
LOGOUT = "/oauth2/logout"
BACK = "https://app.example.com/logged-out"
BACK_WITH_QUERY = "https://app.example.com/bye?from=kt"
ISSUER = "http://127.0.0.1:8000"


@pytest.fixture
async def rp(app: FastAPI, client: httpx.AsyncClient) -> dict[str, Any]:
    return await register(app, client, post_logout_redirect_uris=[BACK, BACK_WITH_QUERY])


@dataclass(frozen=True)
class SignIn:
    """The browser's user and what the relying party holds for it."""

    user_id: str
    id_token: str
    access_token: str


@pytest.fixture
async def user(app: FastAPI, client: httpx.AsyncClient, rp: dict[str, Any]) -> SignIn:
    """Signs a user in through the pages (the client keeps the cookie) and runs the code
    flow for ``rp`` in that browser: the ID Token is the hint the RP would send."""
    email = await signed_in(client)
    verifier, challenge = pkce_pair()
    code, _ = await code_for(client, rp, code_challenge=challenge, code_challenge_method="S256")
    answer = await token(
        client,
        rp,
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT,
        code_verifier=verifier,
    )
    assert answer.status_code == 200, answer.text
    async with app.state.services.auth._uow_factory() as uow:
        found = await uow.users.get_by_email(email)
    assert found is not None
    body = answer.json()
    return SignIn(
        user_id=str(found.id), id_token=body["id_token"], access_token=body["access_token"]
    )


def session_cookie(app: FastAPI, client: httpx.AsyncClient) -> str | None:
    cookie: str | None = client.cookies.get(app.state.hosted_pages.kit.cookies.session)
    return cookie


async def live(app: FastAPI, cookie: str | None) -> bool:
    return await app.state.services.browser.current(cookie) is not None


async def test_valid_hint_ends_the_session_and_goes_back_with_state(
    app: FastAPI, client: httpx.AsyncClient, user: SignIn
) -> None:
    cookie = session_cookie(app, client)
    assert await live(app, cookie)
    params = {
        "id_token_hint": user.id_token,
        "post_logout_redirect_uri": BACK_WITH_QUERY,
        "state": "s t&ate",
        "ui_locales": "de",
    }
    answer = await client.get(LOGOUT, params=params)
    assert answer.status_code == 303
    target = urlsplit(answer.headers["location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == "https://app.example.com/bye"
    assert parse_qs(target.query) == {"from": ["kt"], "state": ["s t&ate"]}
    assert not await live(app, cookie)
    assert (
        "Max-Age=0" in answer.headers["set-cookie"]
        or "expires=" in answer.headers["set-cookie"].lower()
    )


async def test_expired_hint_is_accepted_and_post_works(
    app: FastAPI, client: httpx.AsyncClient, rp: dict[str, Any], user: SignIn
) -> None:
    cookie = session_cookie(app, client)
    # An hour on, the ID Token has long expired; the browser session has not.
    later = utcnow() + timedelta(hours=1)
    assert jwt.decode(user.id_token, options={"verify_signature": False})["exp"] < later.timestamp()
    with time_machine.travel(later, tick=True):
        answer = await client.post(
            LOGOUT,
            data={
                "id_token_hint": user.id_token,
                "client_id": rp["client_id"],
                "post_logout_redirect_uri": BACK,
            },
        )
    assert answer.status_code == 303
    assert answer.headers["location"] == BACK
    assert not await live(app, cookie)


async def test_without_a_valid_hint_the_user_is_asked(
    app: FastAPI, client: httpx.AsyncClient, rp: dict[str, Any], user: SignIn
) -> None:
    cookie = session_cookie(app, client)
    foreign_key = generate_key("RS256")
    forged = Signer(foreign_key).sign(
        {"iss": ISSUER, "sub": user.user_id, "aud": rp["client_id"], "iat": 1, "exp": 2**31},
        typ="JWT",
    )
    # A real ID Token of the same client, but for another user (signed in elsewhere).
    other_user = (await grant(app, rp, "openid")).id_token
    # The user's own access token is no ID Token (typ at+jwt).
    for hint in (None, forged, user.access_token, other_user, "garbage"):
        params = {"client_id": rp["client_id"], "post_logout_redirect_uri": BACK, "state": "xyz"}
        if hint:
            params["id_token_hint"] = hint
        page = await client.get(LOGOUT, params=params)
        assert page.status_code == 200
        assert "location" not in page.headers
        assert 'name="csrf_token"' in page.text
        assert (
            "form-action 'self' https://app.example.com;" in page.headers["content-security-policy"]
        )
        assert await live(app, cookie)
    # A client_id that contradicts the hint's audience: no client, no redirect offered.
    mismatch = await client.get(
        LOGOUT,
        params={
            "id_token_hint": user.id_token,
            "client_id": "someone-else",
            "post_logout_redirect_uri": BACK,
        },
    )
    assert mismatch.status_code == 200
    assert BACK not in mismatch.text
    assert await live(app, cookie)
    # The confirmation form: CSRF-protected; a good submission ends the session.
    refused = await client.post(LOGOUT, data={"csrf_token": "forged", "client_id": rp["client_id"]})
    assert refused.status_code == 403
    assert await live(app, cookie)
    confirmed = await client.post(
        LOGOUT,
        data={
            "csrf_token": csrf_from(page.text),
            "client_id": rp["client_id"],
            "post_logout_redirect_uri": BACK,
            "state": "xyz",
        },
    )
    assert confirmed.status_code == 303
    assert confirmed.headers["location"] == f"{BACK}?state=xyz"
    assert not await live(app, cookie)


@pytest.mark.parametrize(
    "mutant",
    [
        BACK + "/",
        "https://App.example.com/logged-out",
        "https://app.example.com/Logged-out",
        BACK + "?x=1",
        BACK + "#frag",
        BACK + "#",
        "https://user@app.example.com/logged-out",
        "https://app.example.com:8443/logged-out",
        "https://app.example.com:443/logged-out",
        "http://app.example.com/logged-out",
        "https://app.example.com.evil.example/logged-out",
        "https://evil.example/logged-out",
        "//app.example.com/logged-out",
        " " + BACK,
    ],
)
async def test_open_redirect_mutants_never_redirect(
    app: FastAPI, client: httpx.AsyncClient, user: SignIn, mutant: str
) -> None:
    cookie = session_cookie(app, client)
    answer = await client.get(
        LOGOUT,
        params={
            "id_token_hint": user.id_token,
            "post_logout_redirect_uri": mutant,
            "state": "s",
        },
    )
    # The valid hint still signs the user out; only the redirect is withheld.
    assert answer.status_code == 200
    assert "location" not in answer.headers
    assert "Signed out" in answer.text
    assert not await live(app, cookie)


async def test_signed_out_browser(
    app: FastAPI, client: httpx.AsyncClient, rp: dict[str, Any]
) -> None:
    back = await client.get(
        LOGOUT, params={"client_id": rp["client_id"], "post_logout_redirect_uri": BACK}
    )
    assert back.status_code == 303
    assert back.headers["location"] == BACK
    page = await client.get(LOGOUT)
    assert page.status_code == 200
    assert "Signed out" in page.text
