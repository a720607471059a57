"""The authorization code flow end to end (RFC 6749 section 4.1, RFC 7636, OIDC Core 3.1).

Every test drives the real app over HTTP with a cookie jar: sign in through /ui/login,
/oauth2/authorize, the consent page, /oauth2/token; ID Tokens are verified with PyJWT
(an independent library) against the served JWKS.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI

from keyturn.config import Settings
from oauth_helpers import (
    REDIRECT,
    code_for,
    pkce_pair,
    register,
    signed_in,
    token,
)

pytestmark = pytest.mark.anyio


async def verify_id_token(
    client: httpx.AsyncClient, id_token: str, audience: str, issuer: str
) -> dict[str, Any]:
    keys = (await client.get("/.well-known/jwks.json")).json()["keys"]
    header = jwt.get_unverified_header(id_token)
    assert header["alg"] == "RS256"
    jwk = next(key for key in keys if key["kid"] == header["kid"])
    public = jwt.PyJWK.from_json(json.dumps(jwk))
    claims: dict[str, Any] = jwt.decode(
        id_token, public.key, algorithms=["RS256"], audience=audience, issuer=issuer
    )
    return claims


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
