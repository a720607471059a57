"""Protocol edges found by an outside relying party and attack pass (issue 12, findings
12, 13, 16, 17, 18 and 19).

ASVS v5.0.0 requirements proved here:

- 7.6.1: ``max_age`` forces a re-authentication that ends (``max_age=0`` issues a code after
  one fresh sign-in; a slow consent is not sent back to sign in) and is never skipped.
- 10.4.11: an OpenID request gets only the scopes Keyturn knows and the client may ask for;
  unknown values are ignored (OIDC Core 3.1.2.1), never granted.
- 10.4.1: redirect URIs match exactly, except the port of a public client's loopback IP
  redirect URI (RFC 8252 section 7.3), at the authorization and the token endpoint.
- 4.1.4: HEAD is served wherever GET is (RFC 9110 section 9.3.2), same status and headers,
  no body; other methods stay refused.
- 4.3.2: GraphQL names no fields in production, not even as "Did you mean" suggestions.
- 3.7.2: no redirect is built from the request's Host header (trailing-slash redirects
  included); every Location is relative or names a registered client URI.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import time_machine
from fastapi import FastAPI

from conftest import SettingsFactory
from e2e.processes import keyturn_env, spawn_server, wait_healthy
from helpers import bearer, running_app, signup_login, ui_login
from keyturn.config import OWASP_ARGON2_MEMORY_KIB, OWASP_ARGON2_TIME_COST
from keyturn.domain import utcnow
from oauth_helpers import (
    REDIRECT,
    auth_params,
    consent,
    pkce_pair,
    query_of,
    register,
    signed_in,
    token,
)
from security.conftest import Target

pytestmark = pytest.mark.anyio

HOSTILE_HOST = "evil.example"


def pkce() -> tuple[str, dict[str, str]]:
    verifier, challenge = pkce_pair()
    return verifier, {"code_challenge": challenge, "code_challenge_method": "S256"}


async def _allow(client: httpx.AsyncClient, location: str) -> httpx.Response:
    assert location.startswith("/ui/consent?"), location
    answer = await consent(client, location, "allow")
    assert answer.status_code == 303, answer.text
    return answer


# -- finding 16: max_age (OIDC Core 3.1.2.1) ----------------------------------------------


async def test_asvs_7_6_1_max_age_0_signs_in_once_then_issues_a_code(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """max_age=0 is prompt=login in effect: one fresh sign-in, then a code (no loop)."""
    oauth_client = await register(app, client)
    email = await signed_in(client)
    first_sign_in = utcnow()
    verifier, extra = pkce()
    with time_machine.travel(utcnow() + timedelta(seconds=2), tick=True):
        answer = await client.get(
            "/oauth2/authorize", params=auth_params(oauth_client, max_age="0", **extra)
        )
        assert answer.headers["location"].startswith("/ui/login?"), answer.headers
        login = await ui_login(client, email, next=query_of(answer.headers["location"])["next"])
        assert login.status_code == 303, login.text
        back = await client.get(login.headers["location"])
        assert back.status_code == 303
        # Consent, not a second trip to the sign-in page.
        allowed = await _allow(client, back.headers["location"])
        location = allowed.headers["location"]
        assert location.startswith(REDIRECT + "?code="), location
        redeemed = await token(
            client,
            oauth_client,
            grant_type="authorization_code",
            code=query_of(location)["code"],
            redirect_uri=REDIRECT,
            code_verifier=verifier,
        )
    assert redeemed.status_code == 200, redeemed.text
    # The same check the relying party makes: the sign-in is the fresh one.
    claims = jwt.decode(redeemed.json()["id_token"], options={"verify_signature": False})
    assert claims["auth_time"] >= int(first_sign_in.timestamp()) + 1


async def test_asvs_7_6_1_max_age_slow_consent_is_not_sent_back_to_sign_in(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """max_age is measured at the authorization request: a user who reads the consent page
    for longer than max_age still gets the code."""
    oauth_client = await register(app, client)
    await signed_in(client)
    _, extra = pkce()
    answer = await client.get(
        "/oauth2/authorize", params=auth_params(oauth_client, max_age="5", **extra)
    )
    location = answer.headers["location"]
    assert location.startswith("/ui/consent?"), location
    with time_machine.travel(utcnow() + timedelta(seconds=6), tick=True):
        allowed = await _allow(client, location)
    assert allowed.headers["location"].startswith(REDIRECT + "?code="), allowed.headers


async def test_asvs_7_6_1_max_age_still_forces_sign_in_for_an_old_session(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """The fix does not turn max_age off: an older sign-in goes to the sign-in page, at
    the authorization endpoint and when the consent page is opened directly."""
    oauth_client = await register(app, client)
    await signed_in(client)
    _, extra = pkce()
    params = auth_params(oauth_client, max_age="5", **extra)
    with time_machine.travel(utcnow() + timedelta(seconds=10), tick=True):
        answer = await client.get("/oauth2/authorize", params=params)
        assert answer.headers["location"].startswith("/ui/login?")
        # The consent page without the authorization endpoint's pin: back to it.
        page = await client.get("/ui/consent", params=params)
        assert page.status_code == 303
        assert page.headers["location"].startswith("/oauth2/authorize?")


# -- finding 17: unknown scopes (OIDC Core 3.1.2.1) ---------------------------------------


async def test_asvs_10_4_11_oidc_request_ignores_unknown_scopes(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    oauth_client = await register(app, client)
    await signed_in(client)
    verifier, extra = pkce()
    answer = await client.get(
        "/oauth2/authorize",
        params=auth_params(oauth_client, scope="openid profile address phone", **extra),
    )
    allowed = await _allow(client, answer.headers["location"])
    query = query_of(allowed.headers["location"])
    assert "code" in query, query
    redeemed = await token(
        client,
        oauth_client,
        grant_type="authorization_code",
        code=query["code"],
        redirect_uri=REDIRECT,
        code_verifier=verifier,
    )
    assert redeemed.status_code == 200, redeemed.text
    assert redeemed.json()["scope"] == "openid profile"


async def test_asvs_10_4_11_known_scopes_beyond_the_client_and_plain_oauth_stay_refused(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Ignoring is for values Keyturn does not know, in OpenID requests: a known scope the
    client was not registered for, or an unknown one in a plain OAuth request, is still
    invalid_scope (RFC 6749 section 3.3), never a wider grant."""
    oauth_client = await register(app, client)
    await signed_in(client)
    for scope in ("openid users:write", "openid address users:write", "me:read address"):
        _, extra = pkce()
        answer = await client.get(
            "/oauth2/authorize", params=auth_params(oauth_client, scope=scope, **extra)
        )
        assert answer.status_code == 303
        query = query_of(answer.headers["location"])
        assert query.get("error") == "invalid_scope", (scope, query)


# -- finding 18: loopback redirect ports (RFC 8252 section 7.3) ---------------------------

LOOPBACK_CLIENT: dict[str, Any] = {
    "client_name": "Native App",
    "redirect_uris": ["http://127.0.0.1/cb", "http://[::1]/cb?app=1"],
    "grant_types": ["authorization_code"],
    "scope": "openid",
    "token_endpoint_auth_method": "none",
}


async def test_asvs_10_4_1_loopback_redirect_any_port_for_native_clients(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    native = await register(app, client, **LOOPBACK_CLIENT)
    await signed_in(client)
    for requested in (
        "http://127.0.0.1:53211/cb",
        "http://[::1]:8/cb?app=1",
        "http://127.0.0.1/cb",
    ):
        verifier, extra = pkce()
        params = auth_params(native, redirect_uri=requested, **extra)
        answer = await client.get("/oauth2/authorize", params=params)
        location = answer.headers["location"]
        if location.startswith("/ui/consent"):
            location = (await _allow(client, location)).headers["location"]
        assert location.startswith(requested + ("&" if "?" in requested else "?")), location
        code = query_of(location)["code"]
        # RFC 6749 section 4.1.3: the token request repeats the URI of the request, port
        # included; another port is another URI.
        if requested.endswith(":53211/cb"):
            other = await token(
                client,
                native,
                grant_type="authorization_code",
                code=code,
                redirect_uri="http://127.0.0.1:53212/cb",
                code_verifier=verifier,
            )
            assert other.status_code == 400
            assert other.json()["error"] == "invalid_grant"
            continue
        redeemed = await token(
            client,
            native,
            grant_type="authorization_code",
            code=code,
            redirect_uri=requested,
            code_verifier=verifier,
        )
        assert redeemed.status_code == 200, redeemed.text


async def test_asvs_10_4_1_only_the_loopback_port_may_vary(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    native = await register(app, client, **LOOPBACK_CLIENT)
    confidential = await register(
        app,
        client,
        client_name="Web on loopback",
        redirect_uris=["http://127.0.0.1/cb"],
        scope="openid",
    )
    await signed_in(client)
    refused = [
        (native, "http://127.0.0.1:53211/cb/"),  # path
        (native, "http://127.0.0.1:53211/CB"),
        (native, "http://127.0.0.1:53211/cb?x=1"),  # query
        (native, "http://[::1]:53211/cb"),  # query missing
        (native, "https://127.0.0.1:53211/cb"),  # scheme
        (native, "http://localhost:53211/cb"),  # RFC 8252 section 8.3
        (native, "http://127.0.0.2:53211/cb"),
        (native, "http://127.0.0.1.evil.example:53211/cb"),
        (native, "http://127.0.0.1:53211@evil.example/cb"),
        (native, "http://127.0.0.1:0/cb"),
        (native, "http://127.0.0.1:65536/cb"),
        (native, "http://127.0.0.1:+80/cb"),
        (native, "http://127.0.0.1:/cb"),
        (native, "http://127.0.0.1:53211#/cb"),
        (native, "http://127.0.0.1:53211/cb#x"),
        # RFC 8252 concerns native (public) clients; a confidential client matches exactly.
        (confidential, "http://127.0.0.1:53211/cb"),
    ]
    for oauth_client, uri in refused:
        _, extra = pkce()
        answer = await client.get(
            "/oauth2/authorize", params=auth_params(oauth_client, redirect_uri=uri, **extra)
        )
        assert answer.status_code == 400, (uri, answer.status_code, answer.headers)
        assert "location" not in answer.headers, uri


# -- finding 19: HEAD wherever GET is served (RFC 9110 section 9.3.2) ---------------------

# Headers that differ between any two requests (ids, nonces, fresh CSRF cookies).
_PER_REQUEST = {"x-request-id", "content-security-policy", "set-cookie", "content-length"}


def _get_targets(all_routes: list[Target]) -> list[Target]:
    found = [t for t in all_routes if t.method == "GET"]
    assert len(found) > 20, found
    return found


async def test_asvs_4_1_4_head_is_served_wherever_get_is(
    client: httpx.AsyncClient, all_routes: list[Target]
) -> None:
    paths = {t.path for t in _get_targets(all_routes)}
    paths |= {"/openapi.json", "/docs/assets/swagger-ui.css", "/ui/login", "/ui/"}
    for path in sorted(paths):
        got = await client.get(path)
        head = await client.head(path)
        assert head.status_code == got.status_code, (path, head.status_code, got.status_code)
        assert head.content == b"", path
        assert head.headers.get("content-type") == got.headers.get("content-type"), path
        assert head.headers.get("cache-control") == got.headers.get("cache-control"), path
        assert set(head.headers) - _PER_REQUEST == set(got.headers) - _PER_REQUEST, path
        if path.startswith("/.well-known/") or path in ("/healthz", "/docs"):
            assert head.status_code == 200, path
            # RFC 9110 section 8.6: the length the GET body would have.
            assert head.headers["content-length"] == str(len(got.content)), path


async def test_asvs_4_1_4_head_with_credentials_and_refused_methods(
    client: httpx.AsyncClient,
) -> None:
    login = await signup_login(client)
    got = await client.get("/v1/me", headers=bearer(login["access_token"]))
    head = await client.head("/v1/me", headers=bearer(login["access_token"]))
    assert (got.status_code, head.status_code) == (200, 200)
    assert head.content == b""
    assert head.headers["cache-control"] == got.headers["cache-control"] == "no-store"
    # HEAD of a POST-only route is what GET gets there: 405, with Allow; and the methods
    # refused before stay refused.
    head_post_only = await client.head("/oauth2/token")
    assert head_post_only.status_code == (await client.get("/oauth2/token")).status_code == 405
    assert head_post_only.content == b""
    for method in ("TRACE", "CONNECT", "TRACK"):
        assert (await client.request(method, "/healthz")).status_code == 405


# -- finding 12: GraphQL suggestions in production -----------------------------------------


async def test_asvs_4_3_2_graphql_suggests_no_names_in_production(
    make_settings: SettingsFactory,
) -> None:
    production = make_settings(
        env="production",
        issuer="https://id.example.com",
        argon2_memory_kib=OWASP_ARGON2_MEMORY_KIB,
        argon2_time_cost=OWASP_ARGON2_TIME_COST,
        require_verified_email=False,
    )
    # Each typo, and the name graphql-core would suggest for it.
    typos = [
        ("{ usr { id } }", "'user'"),  # field of a type
        ("{ me { emial } }", "'email'"),
        ("{ users(frist: 1) { edges { node { id } } } }", "'first'"),  # argument
        ("query($x: Usr) { __typename }", "'User'"),  # type
        ('mutation { lockUsr(id: "x") { id } }', "'lockUser'"),
    ]
    async with running_app(production) as http:
        for query, suggested in typos:
            answer = await http.post(
                "https://id.example.com/graphql",
                json={"query": query},
                headers={"host": "id.example.com"},
            )
            assert answer.json()["errors"][0]["extensions"]["code"] == "invalid_query"
            assert "Did you mean" not in answer.text, answer.text
            assert suggested not in answer.text, (query, answer.text)
    # Where the schema is public (docs on, as in dev), the suggestions help and stay.
    async with running_app(make_settings()) as http:
        answer = await http.post("/graphql", json={"query": typos[0][0]})
        assert "Did you mean 'user'" in answer.text, answer.text


# -- finding 13: no redirect built from the Host header -----------------------------------


def _hostile(location: str | None) -> bool:
    return location is not None and HOSTILE_HOST in location.lower()


async def test_asvs_3_7_2_no_redirect_follows_the_host_header(
    app: FastAPI, client: httpx.AsyncClient, all_routes: list[Target]
) -> None:
    """Every route, with and without a trailing slash (and with one removed), under a
    hostile Host header: no Location names that host."""
    hostile = {"host": HOSTILE_HOST}
    paths = {t.path for t in all_routes} | {"/docs", "/openapi.json", "/ui"}
    variants = {p + "/" for p in paths} | {p.rstrip("/") for p in paths if p != "/"} | paths
    for path in sorted(variants):
        for method in ("GET", "POST"):
            answer = await client.request(method, path, headers=hostile)
            location = answer.headers.get("location")
            assert not _hostile(location), (method, path, answer.status_code, location)
            if location is not None:
                # Relative to this server (the browser keeps the host it asked).
                assert location.startswith("/"), location
                assert not location.startswith("//"), location
    # The trailing-slash redirect that reflected the host is gone.
    for path in ("/ui/login/", "/v1/me/", "/.well-known/jwks.json/"):
        slash = await client.get(path, headers=hostile)
        assert slash.status_code == 404, path
        assert "location" not in slash.headers, path
    # The one slash redirect kept for people typing the address is relative.
    bare = await client.get("/ui", headers=hostile)
    assert (bare.status_code, bare.headers["location"]) == (303, "/ui/")


async def test_asvs_3_7_2_redirecting_routes_ignore_a_hostile_host(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """The routes that do redirect (sign-in, authorization, logout, consent) send the
    browser to a relative path or to the client's registered URI, whatever the Host."""
    oauth_client = await register(
        app, client, post_logout_redirect_uris=["https://app.example.com/bye"]
    )
    hostile = {"host": HOSTILE_HOST}
    _, extra = pkce()
    params = auth_params(oauth_client, **extra)
    signed_out = await client.get("/oauth2/authorize", params=params, headers=hostile)
    assert signed_out.headers["location"].startswith("/ui/login?")
    home = await client.get("/ui/", headers=hostile)
    assert home.headers["location"] == "/ui/login"
    email = await signed_in(client)
    login = await ui_login(client, email, next="/ui/")
    assert login.headers["location"] == "/ui/"
    to_consent = await client.get("/oauth2/authorize", params=params, headers=hostile)
    assert to_consent.headers["location"].startswith("/ui/consent?")
    allowed = await consent(client, to_consent.headers["location"], "allow")
    assert allowed.headers["location"].startswith(REDIRECT + "?code=")
    logout = await client.get(
        "/oauth2/logout",
        params={
            "client_id": oauth_client["client_id"],
            "post_logout_redirect_uri": "https://app.example.com/bye",
            "state": "s-" + uuid.uuid4().hex,
        },
        headers=hostile,
    )
    assert not _hostile(logout.headers.get("location")), logout.headers
    docs = await client.get("/docs/", headers=hostile)
    assert not _hostile(docs.headers.get("location"))


@pytest.mark.slow
def test_asvs_4_1_4_head_and_host_over_a_real_server(tmp_path: Path) -> None:
    """The same over ``keyturn serve`` (uvicorn speaking HTTP/1.1 on a socket): HEAD
    answers carry the GET's headers and no body, so the next answer on the same
    keep-alive connection is read intact; a hostile Host is never reflected."""
    server = spawn_server(tmp_path, keyturn_env(tmp_path / "data"))
    try:
        wait_healthy(server)
        with httpx.Client(base_url=server.base_url, timeout=10.0) as http:
            documents = ("/.well-known/openid-configuration", "/.well-known/jwks.json")
            for path in (*documents, "/ui/login"):
                got = http.get(path)
                head = http.head(path)
                assert (head.status_code, got.status_code) == (200, 200), path
                assert head.content == b""
                assert head.headers["content-type"] == got.headers["content-type"]
                if path.startswith("/.well-known/"):
                    assert head.headers["content-length"] == str(len(got.content))
                # Same connection: a body sent after the HEAD would corrupt this answer.
                assert http.get("/healthz").json() == {"status": "ok"}
            for path in ("/ui/login/", "/.well-known/jwks.json/"):
                answer = http.get(path, headers={"host": HOSTILE_HOST})
                assert answer.status_code == 404, path
                assert "location" not in answer.headers
    finally:
        server.stop()
