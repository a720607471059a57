"""The authorization code flow end to end (RFC 6749 section 4.1, RFC 7636, OIDC Core 3.1).

Every test drives the real app over HTTP with a cookie jar: sign in through /ui/login,
/oauth2/authorize, the consent page, /oauth2/token; ID Tokens are verified with PyJWT
(an independent library) against the served JWKS.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from urllib.parse import urlencode

import httpx
import jwt
import pytest
import time_machine
from fastapi import FastAPI

from helpers import PASSWORD, new_email, ui_login
from keyturn.config import Settings
from keyturn.domain import utcnow
from oauth_helpers import (
    REDIRECT,
    auth_params,
    authorize_and_redeem,
    code_for,
    consent,
    pkce_pair,
    query_of,
    register,
    signed_in,
    token,
    verify_id_token,
)

pytestmark = pytest.mark.anyio


async def test_id_token_uses_the_clients_registered_algorithm(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    """OIDC Core section 3.1.3.7: the ID Token is signed with the client's
    id_token_signed_response_alg; at_hash uses that algorithm's hash (section 3.1.3.6)."""
    oauth_client = await register(app, client, id_token_signed_response_alg="ES256")
    await signed_in(client)
    answer = await authorize_and_redeem(client, oauth_client)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    claims = await verify_id_token(
        client, body["id_token"], oauth_client["client_id"], settings.issuer, alg="ES256"
    )
    digest = hashlib.sha256(body["access_token"].encode()).digest()[:16]
    assert claims["at_hash"] == jwt.utils.base64url_encode(digest).decode()


async def test_code_flow_with_pkce_and_id_token(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    oauth_client = await register(app, client)
    await signed_in(client)
    verifier, challenge = pkce_pair()
    code, query = await code_for(
        client,
        oauth_client,
        scope="openid offline_access me:read",
        nonce="n-0S6_WzA2Mj",
        code_challenge=challenge,
        code_challenge_method="S256",
    )
    # RFC 9207 section 2: iss in every authorization response.
    assert query["iss"] == settings.issuer
    assert query["state"].startswith("st-")
    answer = await token(
        client,
        oauth_client,
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT,
        code_verifier=verifier,
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "me:read offline_access openid"
    assert body["refresh_token"]
    claims = await verify_id_token(
        client, body["id_token"], oauth_client["client_id"], settings.issuer
    )
    assert claims["nonce"] == "n-0S6_WzA2Mj"
    assert claims["amr"] == ["pwd"]
    # One factor (the password): level "1", which discovery lists.
    assert claims["acr"] == "1"
    discovery = (await client.get("/.well-known/openid-configuration")).json()
    # One factor ("1") and more than one ("2", issue 15).
    assert discovery["acr_values_supported"] == ["1", "2"]
    assert "acr" in discovery["claims_supported"]
    assert isinstance(claims["auth_time"], int)
    assert claims["sid"]
    expected_at_hash = jwt.utils.base64url_encode(
        __import__("hashlib").sha256(body["access_token"].encode()).digest()[:16]
    ).decode()
    assert claims["at_hash"] == expected_at_hash
    access = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert jwt.get_unverified_header(body["access_token"])["typ"] == "at+jwt"
    assert access["aud"] == oauth_client["client_id"]
    assert access["client_id"] == oauth_client["client_id"]
    assert access["sub"] == claims["sub"]
    assert access["sid"] != claims["sid"]  # the grant session, not the browser session
    # Refresh with the same rotation rules as first-party tokens.
    refreshed = await token(
        client, oauth_client, grant_type="refresh_token", refresh_token=body["refresh_token"]
    )
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["refresh_token"] != body["refresh_token"]


# -- consent -------------------------------------------------------------------------------


async def test_consent_is_remembered_until_prompt_consent(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    oauth_client = await register(app, client, require_pkce=False)
    await signed_in(client)
    first = await client.get("/oauth2/authorize", params=auth_params(oauth_client))
    assert first.status_code == 303
    assert first.headers["location"].startswith("/ui/consent?")
    page = await client.get(first.headers["location"])
    assert "Example App" in page.text
    assert "Know who you are" in page.text
    # The page's CSP lets the Allow answer redirect to the client (Chrome: form-action).
    assert "form-action 'self' https://app.example.com;" in page.headers["content-security-policy"]
    allowed = await consent(client, first.headers["location"], "allow")
    assert allowed.status_code == 303
    assert "code" in query_of(allowed.headers["location"])
    # Covered by the stored consent: straight to the client.
    again = await client.get("/oauth2/authorize", params=auth_params(oauth_client))
    assert again.status_code == 303
    assert again.headers["location"].startswith(REDIRECT + "?code=")
    # prompt=consent shows the page anyway; a wider scope set too.
    forced = await client.get(
        "/oauth2/authorize", params=auth_params(oauth_client, prompt="consent")
    )
    assert forced.headers["location"].startswith("/ui/consent?")
    wider = await client.get(
        "/oauth2/authorize", params=auth_params(oauth_client, scope="openid email")
    )
    assert wider.headers["location"].startswith("/ui/consent?")


async def test_deny_sends_access_denied(app: FastAPI, client: httpx.AsyncClient) -> None:
    oauth_client = await register(app, client, require_pkce=False)
    await signed_in(client)
    params = auth_params(oauth_client)
    first = await client.get("/oauth2/authorize", params=params)
    denied = await consent(client, first.headers["location"], "deny")
    assert denied.status_code == 303
    query = query_of(denied.headers["location"])
    assert query["error"] == "access_denied"
    assert query["state"] == params["state"]
    assert "iss" in query


# -- sign-in, prompt and max_age -------------------------------------------------------------


async def test_signed_out_goes_to_login_and_back(app: FastAPI, client: httpx.AsyncClient) -> None:
    oauth_client = await register(app, client, require_pkce=False)
    email = "hint@example.com"
    params = auth_params(oauth_client, login_hint=email)
    answer = await client.get("/oauth2/authorize", params=params)
    assert answer.status_code == 303
    location = answer.headers["location"]
    assert location.startswith("/ui/login?next=%2Foauth2%2Fauthorize%3F")
    page = await client.get(location)
    assert f'value="{email}"' in page.text  # login_hint prefilled
    # The login page's CSP lets the redirect chain end at the client.
    assert "https://app.example.com" in page.headers["content-security-policy"]
    user = await signed_in_user(client)
    login = await ui_login(client, user, next=query_of(location)["next"])
    # 303, never 307: a 307 would repost the password to the next hop.
    assert login.status_code == 303
    assert login.headers["location"].startswith("/oauth2/authorize?")


async def signed_in_user(client: httpx.AsyncClient) -> str:
    """A fresh account (signed up, not signed in)."""
    email = new_email()
    await client.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
    return email


async def test_prompt_none_without_session_is_login_required(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    oauth_client = await register(app, client, require_pkce=False)
    answer = await client.get("/oauth2/authorize", params=auth_params(oauth_client, prompt="none"))
    assert answer.status_code == 303
    query = query_of(answer.headers["location"])
    assert answer.headers["location"].startswith(REDIRECT + "?")
    assert query["error"] == "login_required"
    await signed_in(client)
    answer = await client.get("/oauth2/authorize", params=auth_params(oauth_client, prompt="none"))
    assert query_of(answer.headers["location"])["error"] == "consent_required"


async def test_prompt_login_forces_a_new_sign_in_without_a_loop(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    oauth_client = await register(app, client, require_pkce=False)
    email = await signed_in(client)
    await code_for(client, oauth_client)  # consent stored
    answer = await client.get("/oauth2/authorize", params=auth_params(oauth_client, prompt="login"))
    location = answer.headers["location"]
    assert location.startswith("/ui/login?")
    next_url = query_of(location)["next"]
    assert "prompt" not in query_of(next_url)
    assert "kt_auth_after" in query_of(next_url)
    # The old session does not satisfy the marker; a new sign-in does.
    stale = await client.get(next_url)
    assert stale.headers["location"].startswith("/ui/login?")
    with time_machine.travel(utcnow() + timedelta(seconds=2), tick=True):
        login = await ui_login(client, email, next=next_url)
        assert login.status_code == 303
        back = await client.get(login.headers["location"])
    assert back.headers["location"].startswith(REDIRECT + "?code=")


async def test_max_age_sends_an_old_sign_in_back_to_login(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    oauth_client = await register(app, client, require_pkce=False)
    await signed_in(client)
    await code_for(client, oauth_client)
    fresh = await client.get("/oauth2/authorize", params=auth_params(oauth_client, max_age="60"))
    assert fresh.headers["location"].startswith(REDIRECT + "?code=")
    with time_machine.travel(utcnow() + timedelta(seconds=120), tick=True):
        old = await client.get("/oauth2/authorize", params=auth_params(oauth_client, max_age="60"))
    assert old.headers["location"].startswith("/ui/login?")
    bad = await client.get("/oauth2/authorize", params=auth_params(oauth_client, max_age="-1"))
    assert query_of(bad.headers["location"])["error"] == "invalid_request"


# -- response modes ------------------------------------------------------------------------


async def test_form_post_answers_with_a_self_submitting_form(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    oauth_client = await register(app, client, require_pkce=False)
    await signed_in(client)
    await code_for(client, oauth_client)
    params = auth_params(oauth_client, response_mode="form_post")
    answer = await client.get("/oauth2/authorize", params=params)
    assert answer.status_code == 200
    assert "location" not in answer.headers
    html = answer.text
    assert f'action="{REDIRECT}"' in html
    assert 'name="code"' in html
    assert f'name="state" value="{params["state"]}"' in html
    assert f'name="iss" value="{settings.issuer}"' in html
    assert '<button type="submit">' in html  # works without JavaScript
    csp = answer.headers["content-security-policy"]
    assert "form-action https://app.example.com;" in csp
    assert "script-src 'sha256-" in csp
    assert answer.headers["cache-control"] == "no-store"


async def test_post_authorize_takes_the_same_parameters(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    oauth_client = await register(app, client, require_pkce=False)
    await signed_in(client)
    await code_for(client, oauth_client)
    answer = await client.post("/oauth2/authorize", data=auth_params(oauth_client))
    assert answer.status_code == 303
    assert answer.headers["location"].startswith(REDIRECT + "?code=")


# -- errors at the authorization endpoint ---------------------------------------------------


async def test_errors_after_the_redirect_check_go_to_the_client(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    oauth_client = await register(app, client)
    await signed_in(client)
    _, challenge = pkce_pair()
    pkce = {"code_challenge": challenge, "code_challenge_method": "S256"}
    cases = [
        ({"response_type": "token", **pkce}, "unsupported_response_type"),
        ({"scope": "openid users:write", **pkce}, "invalid_scope"),
        # RFC 6749 section 3.3 without openid; an OpenID request ignores unknown values
        # (OIDC Core 3.1.2.1, tests/security/test_attack_protocol_edges.py).
        ({"scope": "me:read unknown", **pkce}, "invalid_scope"),
        ({}, "invalid_request"),  # PKCE required
        ({"code_challenge": challenge, "code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": challenge}, "invalid_request"),  # method absent = plain
        ({"code_challenge": "short", "code_challenge_method": "S256"}, "invalid_request"),
        ({"prompt": "none login", **pkce}, "invalid_request"),
        ({"response_mode": "fragment", **pkce}, "invalid_request"),
        # OIDC Core section 6: request objects are refused, not ignored.
        ({"request": "eyJhbGciOiJub25lIn0.e30.", **pkce}, "request_not_supported"),
        ({"request_uri": "https://app.example.com/r/1", **pkce}, "request_uri_not_supported"),
    ]
    for extra, error in cases:
        params = auth_params(oauth_client, **extra)
        answer = await client.get("/oauth2/authorize", params=params)
        assert answer.status_code == 303, (extra, answer.text)
        location = answer.headers["location"]
        assert location.startswith(REDIRECT + "?"), extra
        query = query_of(location)
        assert query["error"] == error, (extra, query)
        assert query["state"] == params["state"]
        assert query["iss"]


def mutants(uri: str) -> list[str]:
    """Redirect URIs that must never match ``uri`` (RFC 9700 section 4.1.3)."""
    scheme, rest = uri.split("://", 1)
    host, _, path = rest.partition("/")
    return [
        uri + "/",
        uri.upper(),
        scheme + "://" + host.upper() + "/" + path,
        uri + "?x=1",
        uri + "#frag",
        f"{scheme}://{host}@evil.example/{path}",
        f"{scheme}://evil.example@{host}/{path}",
        f"{scheme}://{host}/{path}/..;/",
        f"{scheme}://{host}/{path}/%2e%2e/",
        f"{scheme}://{host}/%2563b",
        f"{scheme}://{host}/{path}%2F",
        f"{scheme}://evil.{host}/{path}",
        f"{scheme}://{host}.evil.example/{path}",
        f"{'http' if scheme == 'https' else 'https'}://{host}/{path}",
        f"{scheme}://{host}:8443/{path}",
        f"{scheme}://{host}:443/{path}",
        f"{scheme}://{host.replace('a', 'а')}/{path}",  # Cyrillic a (IDN homograph)
        f"{scheme}://xn--pp-8cd.example.com/{path}",
        " " + uri,
        uri + " ",
        "",
    ]


async def test_redirect_uri_mutants_never_redirect(app: FastAPI, client: httpx.AsyncClient) -> None:
    oauth_client = await register(
        app, client, redirect_uris=[REDIRECT, "https://app.example.com/other"]
    )
    await signed_in(client)
    corpus = mutants(REDIRECT)
    for mutant in corpus:
        for mode in ("query", "form_post"):
            # Valid otherwise, and broken otherwise too (the redirect check comes first).
            for extra in ({}, {"response_type": "token", "scope": "nope"}):
                params = auth_params(oauth_client, redirect_uri=mutant, response_mode=mode, **extra)
                for method in ("GET", "POST"):
                    if method == "GET":
                        answer = await client.get("/oauth2/authorize", params=params)
                    else:
                        answer = await client.post("/oauth2/authorize", data=params)
                    assert answer.status_code == 400, (mutant, mode, method)
                    assert "location" not in answer.headers, (mutant, mode, method)
                    assert answer.headers["content-type"].startswith("text/html")
                    assert "app.example.com" not in answer.text.split("<main", 1)[1]


async def test_unknown_client_and_missing_redirect_are_pages(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    several = await register(app, client, redirect_uris=[REDIRECT, REDIRECT + "2"])
    single = await register(app, client, require_pkce=False)
    await signed_in(client)
    for params in (
        auth_params(several, client_id="A" * 22),
        auth_params(several, client_id="<script>"),
        auth_params(several, redirect_uri=None),
    ):
        answer = await client.get("/oauth2/authorize", params=params)
        assert answer.status_code == 400
        assert "location" not in answer.headers
    # RFC 6749 section 3.1.2.3: one registered URI may be left out of a plain OAuth
    # request; OpenID Connect Core section 3.1.2.1 requires it in an OpenID request.
    plain = auth_params(single, redirect_uri=None, scope="me:read")
    assert (await client.get("/oauth2/authorize", params=plain)).status_code == 303
    openid = await client.get("/oauth2/authorize", params=auth_params(single, redirect_uri=None))
    assert openid.status_code == 400
    assert "location" not in openid.headers
    # A repeated parameter is refused without a redirect.
    repeated = await client.get(
        "/oauth2/authorize?"
        + urlencode(auth_params(single))
        + "&redirect_uri="
        + "https%3A%2F%2Fevil.example%2Fcb"
    )
    assert repeated.status_code == 400
    assert "location" not in repeated.headers
