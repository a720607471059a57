"""Steps shared by the OpenID Foundation conformance mirrors: one code flow, ID Token
verification against the served JWKS with PyJWT (independent of the signing code)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from fastapi import FastAPI

from oauth_helpers import code_for, pkce_pair, redeem, register, signed_in, verify_id_token


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


def at_hash(access_token: str) -> str:
    """OIDC Core section 3.1.3.6: left half of SHA-256 of the access token, base64url."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return jwt.utils.base64url_encode(digest[:16]).decode("ascii")


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
