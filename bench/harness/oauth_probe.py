"""Whether Keyturn's OAuth endpoints exist yet, and the client the OAuth scenarios use.

``POST /oauth2/token`` (client_credentials) and ``POST /oauth2/introspect`` arrive with a
later issue. The harness asks the discovery document first, then the token path itself;
until they answer, their scenarios are reported as "not available yet" instead of failing.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from bench.harness.servers import HarnessError

DISCOVERY = "/.well-known/openid-configuration"
TOKEN_PATH = "/oauth2/token"
INTROSPECT_PATH = "/oauth2/introspect"


@dataclass(frozen=True)
class OAuthEndpoints:
    token_path: str
    introspect_path: str


def probe(base_url: str) -> OAuthEndpoints | str:
    """The endpoint paths when they exist, else why not (a short reason)."""
    with httpx.Client(base_url=base_url, timeout=10.0) as http:
        discovery = http.get(DISCOVERY)
        if discovery.status_code == 200:
            document = discovery.json()
            token = document.get("token_endpoint")
            introspect = document.get("introspection_endpoint")
            if token and introspect:
                return OAuthEndpoints(
                    token_path=httpx.URL(token).path, introspect_path=httpx.URL(introspect).path
                )
        answer = http.post(TOKEN_PATH, data={"grant_type": "client_credentials"})
        if answer.status_code in (404, 405):
            return (
                f"POST {TOKEN_PATH} answers {answer.status_code}; discovery {discovery.status_code}"
            )
        return OAuthEndpoints(token_path=TOKEN_PATH, introspect_path=INTROSPECT_PATH)


@dataclass(frozen=True)
class OAuthClient:
    client_id: str
    client_secret: str


def admin_token(base_url: str, email: str, password: str) -> str:
    with httpx.Client(base_url=base_url, timeout=60.0) as http:
        answer = http.post("/v1/auth/login", json={"email": email, "password": password})
        if answer.status_code != 200:
            raise HarnessError(f"admin login: HTTP {answer.status_code} {answer.text[:300]}")
        return str(answer.json()["access_token"])


# RFC 7591 metadata of the bench's confidential client_credentials client.
CLIENT_METADATA = {
    "client_name": "keyturn-bench",
    "grant_types": ["client_credentials"],
    "response_types": [],
    "redirect_uris": [],
    "token_endpoint_auth_method": "client_secret_basic",
}


def create_client(base_url: str, token: str) -> OAuthClient:
    """A confidential client for client_credentials with HTTP Basic authentication."""
    with httpx.Client(base_url=base_url, timeout=30.0) as http:
        answer = http.post(
            "/v1/admin/clients", json=CLIENT_METADATA, headers={"authorization": f"Bearer {token}"}
        )
    if answer.status_code not in (200, 201):
        raise HarnessError(f"POST /v1/admin/clients: HTTP {answer.status_code} {answer.text[:300]}")
    body = answer.json()
    return OAuthClient(client_id=body["client_id"], client_secret=body["client_secret"])
