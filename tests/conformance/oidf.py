"""Steps shared by the OpenID Foundation conformance mirrors: one code flow, ID Token
verification against the served JWKS with PyJWT (independent of the signing code)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from fastapi import FastAPI

from oauth_helpers import REDIRECT, code_for, pkce_pair, register, signed_in, token


@dataclass
class Flow:
    """One finished code flow: the client, the token answer and the verified ID Token."""

    oauth_client: dict[str, Any]
    body: dict[str, Any]
    claims: dict[str, Any]
    query: dict[str, str]


async def jwks(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    answer = await client.get("/.well-known/jwks.json")
    assert answer.status_code == 200, answer.text
    keys: list[dict[str, Any]] = answer.json()["keys"]
    return keys


async def verify_id_token(
    client: httpx.AsyncClient, id_token: str, audience: str, issuer: str
) -> dict[str, Any]:
    """Verifies ``id_token`` the way a relying party does: the key by ``kid`` from JWKS."""
    header = jwt.get_unverified_header(id_token)
    assert header["alg"] == "RS256", header
    matching = [key for key in await jwks(client) if key.get("kid") == header["kid"]]
    assert len(matching) == 1, (header, matching)
    public = jwt.PyJWK.from_json(json.dumps(matching[0]))
    claims: dict[str, Any] = jwt.decode(
        id_token,
        public.key,
        algorithms=["RS256"],
        audience=audience,
        issuer=issuer,
        options={"require": ["iss", "sub", "aud", "exp", "iat"]},
    )
    return claims


def at_hash(access_token: str) -> str:
    """OIDC Core section 3.1.3.6: left half of SHA-256 of the access token, base64url."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return jwt.utils.base64url_encode(digest[:16]).decode("ascii")


async def redeem(
    client: httpx.AsyncClient, oauth_client: dict[str, Any], code: str, verifier: str
) -> httpx.Response:
    return await token(
        client,
        oauth_client,
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT,
        code_verifier=verifier,
    )


async def code_flow(
    app: FastAPI,
    client: httpx.AsyncClient,
    issuer: str,
    *,
    oauth_client: dict[str, Any] | None = None,
    sign_in: bool = True,
    **extra: str | None,
) -> Flow:
    """Registers a client (unless given), signs in, authorizes with PKCE, redeems."""
    if oauth_client is None:
        oauth_client = await register(app, client)
    if sign_in:
        await signed_in(client)
    verifier, challenge = pkce_pair()
    params: dict[str, str | None] = {
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    code, query = await code_for(client, oauth_client, **params)
    answer = await redeem(client, oauth_client, code, verifier)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    claims = await verify_id_token(client, body["id_token"], oauth_client["client_id"], issuer)
    return Flow(oauth_client=oauth_client, body=body, claims=claims, query=query)
