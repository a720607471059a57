"""A real ``keyturn serve`` driven by an independent OAuth/OIDC client library (Authlib).

The relying party is Authlib's httpx client (``OAuth2Client``): discovery, the
authorization URL with PKCE S256, the code exchange, refresh and client_credentials,
userinfo with the token (Authlib's ``UserInfo`` claims), introspection (RFC 7662) and
revocation (RFC 7009) through its ``introspect_token`` and ``revoke_token``; the ID
Token is checked by Authlib's own JOSE and ``CodeIDToken`` rules (signature by the
server's JWKS, iss, aud, exp, nonce, at_hash). The user's part of the browser flow is an
httpx client holding the session cookie: the /ui/login form with its CSRF token, then
the consent page.

One server for the whole module (CI time): every test registers or signs in what it
needs on it. Not covered yet: RP-initiated logout through the library.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import OAuth2Client
from authlib.jose import JsonWebKey, jwt
from authlib.oidc.core import CodeIDToken, UserInfo
from joserfc.errors import InvalidClaimError

from e2e import processes
from e2e.processes import (
    LOW_ARGON2,
    Server,
    keyturn_env,
    run_keyturn,
    spawn_server,
    wait_healthy,
)
from helpers import PASSWORD, new_email
from net import free_port

# Authlib 1.9 warns (AuthlibDeprecationWarning, at import) about its coming move to httpx2
# and joserfc; the APIs used here still work and raise joserfc's errors already.
pytestmark = pytest.mark.slow

CALLBACK = "http://127.0.0.1:9/cb"  # loopback: never fetched, the code is read off Location
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One ``keyturn serve`` for the module whose ``KEYTURN_ISSUER`` is its own URL (iss
    checks are exact); stopped at the end like the ones ``start_server`` starts."""
    workdir = tmp_path_factory.mktemp("authlib")
    port = free_port()
    issuer = {**LOW_ARGON2, "KEYTURN_ISSUER": f"http://127.0.0.1:{port}"}
    with pytest.MonkeyPatch.context() as patch:
        # spawn_server picks its port itself: make it the one the issuer names.
        patch.setattr(processes, "free_port", lambda: port)
        started = spawn_server(workdir, keyturn_env(workdir / "data", issuer))
    try:
        wait_healthy(started)
        yield started
    finally:
        if started.process.poll() is None:
            started.stop()


@dataclass(frozen=True)
class Provider:
    """What a relying party learns from discovery, and an admin token for setup."""

    metadata: dict[str, Any]
    jwks: dict[str, Any]
    admin: str


@pytest.fixture(scope="module")
def provider(server: Server) -> Provider:
    with httpx.Client(timeout=30.0) as http:
        metadata = http.get(f"{server.base_url}/.well-known/openid-configuration").json()
        assert metadata["issuer"] == server.base_url
        jwks = http.get(metadata["jwks_uri"]).json()
    return Provider(metadata=metadata, jwks=jwks, admin=admin_token(server))


def admin_token(server: Server) -> str:
    email = new_email()
    env = keyturn_env(server.data_dir, LOW_ARGON2)
    created = run_keyturn(
        ["users", "create-admin", "--email", email, "--password-stdin"], env, stdin=PASSWORD + "\n"
    )
    assert created.returncode == 0, created.stderr
    with server.client() as http:
        login = http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return str(login.json()["access_token"])


def register_client(server: Server, token: str, **body: Any) -> dict[str, Any]:
    with server.client() as http:
        answer = http.post(
            "/v1/admin/clients",
            json={
                "client_name": "Authlib RP",
                "redirect_uris": [CALLBACK],
                "grant_types": ["authorization_code", "refresh_token"],
                "scope": "openid email offline_access me:read",
                **body,
            },
            headers={"Authorization": f"Bearer {token}"},
        )
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None, html
    return found.group(1)


def user_agent_flow(server: Server, authorization_url: str, email: str | None = None) -> str:
    """The browser's part: sign up (as ``email``, else a fresh address), sign in through
    /ui/login, allow on the consent page. Returns the redirect to the client (the
    callback URL with code, state, iss)."""
    email = email or new_email()
    with server.client() as browser:
        signup = browser.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
        assert signup.status_code == 202, signup.text
        answer = browser.get(authorization_url)
        assert answer.status_code == 303, answer.text
        login_url = answer.headers["location"]
        assert login_url.startswith("/ui/login?")
        page = browser.get(login_url)
        fields = dict(parse_qsl(urlsplit(login_url).query))
        signed_in = browser.post(
            "/ui/login",
            data={
                "csrf_token": csrf_of(page.text),
                "email": email,
                "password": PASSWORD,
                "next": fields["next"],
            },
        )
        assert signed_in.status_code == 303, signed_in.text
        again = browser.get(signed_in.headers["location"])
        consent_url = again.headers["location"]
        assert consent_url.startswith("/ui/consent?"), consent_url
        consent = browser.get(consent_url)
        assert consent.status_code == 200
        assert "Authlib RP" in consent.text
        allowed = browser.post(
            "/ui/consent",
            data={
                "csrf_token": csrf_of(consent.text),
                "decision": "allow",
                **dict(parse_qsl(urlsplit(consent_url).query)),
            },
        )
        assert allowed.status_code == 303, allowed.text
        callback = allowed.headers["location"]
    assert callback.startswith(CALLBACK + "?"), callback
    return str(callback)


def validated_id_token(
    id_token: str, jwks: dict[str, Any], metadata: dict[str, Any], client_id: str, **params: str
) -> CodeIDToken:
    claims = jwt.decode(
        id_token,
        JsonWebKey.import_key_set(jwks),
        claims_cls=CodeIDToken,
        claims_options={
            "iss": {"essential": True, "value": metadata["issuer"]},
            "aud": {"essential": True, "value": client_id},
        },
        claims_params={"client_id": client_id, **params},
    )
    claims.validate(leeway=5)
    return claims


def test_authlib_relying_party(server: Server, provider: Provider) -> None:
    token = provider.admin
    registered = register_client(server, token)
    client_id = registered["client_id"]
    metadata, jwks = provider.metadata, provider.jwks

    nonce = secrets.token_urlsafe(16)
    verifier = secrets.token_urlsafe(48)
    with OAuth2Client(
        client_id=client_id,
        client_secret=registered["client_secret"],
        token_endpoint_auth_method="client_secret_basic",
        scope="openid email offline_access",
        redirect_uri=CALLBACK,
        code_challenge_method="S256",
        timeout=30.0,
    ) as rp:
        url, state = rp.create_authorization_url(
            metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce
        )
        callback = user_agent_flow(server, url)
        returned = dict(parse_qsl(urlsplit(callback).query))
        assert returned["state"] == state
        assert returned["iss"] == metadata["issuer"]  # RFC 9207
        tokens = rp.fetch_token(
            metadata["token_endpoint"],
            authorization_response=callback,
            code_verifier=verifier,
        )
        assert tokens["token_type"] == "Bearer"
        assert set(tokens["scope"].split()) == {"email", "offline_access", "openid"}
        claims = validated_id_token(
            tokens["id_token"],
            jwks,
            metadata,
            client_id,
            nonce=nonce,
            access_token=tokens["access_token"],
        )
        assert claims["at_hash"]
        assert claims["auth_time"]
        # The library's checks bite: another nonce or access token fails them.
        with pytest.raises(InvalidClaimError):
            validated_id_token(tokens["id_token"], jwks, metadata, client_id, nonce="other")
        with pytest.raises(InvalidClaimError):
            validated_id_token(
                tokens["id_token"], jwks, metadata, client_id, access_token="not-the-token"
            )

        refreshed = rp.refresh_token(
            metadata["token_endpoint"], refresh_token=tokens["refresh_token"]
        )
        assert refreshed["access_token"] != tokens["access_token"]
        assert refreshed["refresh_token"] != tokens["refresh_token"]

    service = register_client(
        server,
        token,
        client_name="Authlib service",
        redirect_uris=[],
        grant_types=["client_credentials"],
        scope="me:read",
    )
    with OAuth2Client(
        client_id=service["client_id"],
        client_secret=service["client_secret"],
        timeout=30.0,
    ) as machine:
        issued = machine.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
    assert issued["token_type"] == "Bearer"
    assert issued["scope"] == "me:read"
    assert "refresh_token" not in issued
    assert "id_token" not in issued
    # Not for Keyturn's own API: the token's audience is the client.
    with server.client() as http:
        me = http.get("/v1/me", headers={"Authorization": f"Bearer {issued['access_token']}"})
    assert me.status_code == 401


@dataclass(frozen=True)
class SignedIn:
    """A relying party after a finished code flow: Authlib's client holds the tokens."""

    rp: OAuth2Client
    tokens: dict[str, Any]
    claims: CodeIDToken
    email: str
    client_id: str


@contextmanager
def signed_in(server: Server, provider: Provider, scope: str) -> Iterator[SignedIn]:
    """A fresh client and user through the whole code flow, the ID Token validated by
    Authlib; the client stays open for the calls a test makes with its token."""
    registered = register_client(server, provider.admin)
    metadata = provider.metadata
    email = new_email()
    nonce = secrets.token_urlsafe(16)
    verifier = secrets.token_urlsafe(48)
    with OAuth2Client(
        client_id=registered["client_id"],
        client_secret=registered["client_secret"],
        token_endpoint_auth_method="client_secret_basic",
        scope=scope,
        redirect_uri=CALLBACK,
        code_challenge_method="S256",
        timeout=30.0,
    ) as rp:
        url, _ = rp.create_authorization_url(
            metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce
        )
        callback = user_agent_flow(server, url, email)
        tokens = rp.fetch_token(
            metadata["token_endpoint"], authorization_response=callback, code_verifier=verifier
        )
        assert set(tokens["scope"].split()) == set(scope.split())
        claims = validated_id_token(
            tokens["id_token"],
            provider.jwks,
            metadata,
            registered["client_id"],
            nonce=nonce,
            access_token=tokens["access_token"],
        )
        yield SignedIn(
            rp=rp, tokens=tokens, claims=claims, email=email, client_id=registered["client_id"]
        )


def test_authlib_userinfo(server: Server, provider: Provider) -> None:
    """OIDC Core 5.3: Authlib's client calls userinfo with its token (GET and POST, the
    Bearer header); the claims are the ID Token's sub and, for scope email, email and
    email_verified; Authlib's own scope-to-claims mapping finds nothing beyond the scopes."""
    endpoint = provider.metadata["userinfo_endpoint"]
    with signed_in(server, provider, "openid email") as session:
        for answer in (session.rp.get(endpoint), session.rp.post(endpoint)):
            assert answer.status_code == 200, answer.text
            info = UserInfo(answer.json())
            assert info.sub == session.claims["sub"]
            assert info.email == session.email
            assert info.email_verified is False
            assert info.filter(session.tokens["scope"]) == info
            assert set(info) == {"sub", "email", "email_verified"}


def test_authlib_introspection(server: Server, provider: Provider) -> None:
    """RFC 7662 through Authlib's ``introspect_token`` (client_secret_basic): a live
    access token is active with the ID Token's sub and the client; after Authlib's
    ``revoke_token`` (RFC 7009) it is ``{"active": false}`` and userinfo refuses it."""
    metadata = provider.metadata
    with signed_in(server, provider, "openid") as session:
        access = session.tokens["access_token"]
        live = session.rp.introspect_token(
            metadata["introspection_endpoint"], token=access, token_type_hint="access_token"
        )
        assert live.status_code == 200, live.text
        body = live.json()
        assert body["active"] is True
        assert body["token_type"] == "access_token"
        assert body["sub"] == session.claims["sub"]
        assert body["client_id"] == session.client_id
        assert body["scope"] == "openid"
        revoked = session.rp.revoke_token(
            metadata["revocation_endpoint"], token=access, token_type_hint="access_token"
        )
        assert revoked.status_code == 200, revoked.text
        dead = session.rp.introspect_token(
            metadata["introspection_endpoint"], token=access, token_type_hint="access_token"
        )
        assert dead.status_code == 200, dead.text
        assert dead.json() == {"active": False}
        refused = session.rp.get(metadata["userinfo_endpoint"])
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith('Bearer error="invalid_token"')


def test_authlib_revocation(server: Server, provider: Provider) -> None:
    """RFC 7009 through Authlib's ``revoke_token``: the refresh token revoked, Authlib's
    ``refresh_token`` fails with invalid_grant (its ``OAuthError``), introspection calls
    the refresh token inactive, and the grant's access token died with it (section 2.1)."""
    metadata = provider.metadata
    with signed_in(server, provider, "openid offline_access") as session:
        refresh = session.tokens["refresh_token"]
        before = session.rp.introspect_token(
            metadata["introspection_endpoint"], token=refresh, token_type_hint="refresh_token"
        )
        assert before.json()["active"] is True
        assert before.json()["token_type"] == "refresh_token"
        revoked = session.rp.revoke_token(
            metadata["revocation_endpoint"], token=refresh, token_type_hint="refresh_token"
        )
        assert revoked.status_code == 200, revoked.text
        with pytest.raises(OAuthError) as refused:
            session.rp.refresh_token(metadata["token_endpoint"], refresh_token=refresh)
        assert refused.value.error == "invalid_grant"
        after = session.rp.introspect_token(
            metadata["introspection_endpoint"], token=refresh, token_type_hint="refresh_token"
        )
        assert after.json() == {"active": False}
        access = session.rp.introspect_token(
            metadata["introspection_endpoint"],
            token=session.tokens["access_token"],
            token_type_hint="access_token",
        )
        assert access.json() == {"active": False}
