"""A real ``keyturn serve`` driven by an independent OAuth/OIDC client library (Authlib).

The relying party is Authlib's httpx client (``OAuth2Client``): discovery, the
authorization URL with PKCE S256, the code exchange, refresh and client_credentials;
the ID Token is checked by Authlib's own JOSE and ``CodeIDToken`` rules (signature by
the server's JWKS, iss, aud, exp, nonce, at_hash). The user's part of the browser flow
is an httpx client holding the session cookie: the /ui/login form with its CSRF token,
then the consent page.

Not covered yet (not in this branch): introspection, revocation, userinfo and
RP-initiated logout through the library; to do once those endpoints are merged.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client
from authlib.jose import JsonWebKey, jwt
from authlib.oidc.core import CodeIDToken
from joserfc.errors import InvalidClaimError

from e2e import processes
from e2e.conftest import StartServer
from e2e.processes import LOW_ARGON2, Server, keyturn_env, run_keyturn
from helpers import PASSWORD, new_email

# Authlib 1.9 warns (AuthlibDeprecationWarning, at import) about its coming move to httpx2
# and joserfc; the APIs used here still work and raise joserfc's errors already.
pytestmark = pytest.mark.slow

CALLBACK = "http://127.0.0.1:9/cb"  # loopback: never fetched, the code is read off Location
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def server(start_server: StartServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Server:
    """``keyturn serve`` whose ``KEYTURN_ISSUER`` is its own URL (iss checks are exact)."""
    port = processes.free_port()
    monkeypatch.setattr(processes, "free_port", lambda: port)
    return start_server({**LOW_ARGON2, "KEYTURN_ISSUER": f"http://127.0.0.1:{port}"})


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


def user_agent_flow(server: Server, authorization_url: str) -> str:
    """The browser's part: sign up, sign in through /ui/login, allow on the consent page.
    Returns the redirect to the client (the callback URL with code, state, iss)."""
    email = new_email()
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


def test_authlib_relying_party(server: Server) -> None:
    token = admin_token(server)
    registered = register_client(server, token)
    client_id = registered["client_id"]
    with httpx.Client(timeout=30.0) as http:
        metadata = http.get(f"{server.base_url}/.well-known/openid-configuration").json()
        assert metadata["issuer"] == server.base_url
        jwks = http.get(metadata["jwks_uri"]).json()

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
