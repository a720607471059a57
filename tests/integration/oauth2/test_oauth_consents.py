"""``GET /v1/me/consents`` and ``DELETE /v1/me/consents/{id}``: a user takes back what an
OAuth client was allowed (issue 6: "Revoking a consent kills the refresh tokens issued
under it").

Every grant here comes from the real flow: /ui/login, /oauth2/authorize, the consent
page and /oauth2/token.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI

from helpers import PASSWORD, bearer
from oauth_helpers import (
    auth_params,
    authorize_and_redeem,
    code_for,
    pkce_pair,
    register,
    signed_in,
    token,
)

pytestmark = pytest.mark.anyio

CONSENTS = "/v1/me/consents"
OFFLINE = "openid offline_access me:read"


async def grant(
    client: httpx.AsyncClient, oauth_client: dict[str, Any], scope: str = OFFLINE
) -> dict[str, Any]:
    """Authorization code + PKCE for the signed-in browser; the token endpoint's answer."""
    answer = await authorize_and_redeem(client, oauth_client, scope=scope)
    assert answer.status_code == 200, answer.text
    tokens: dict[str, Any] = answer.json()
    return tokens


async def first_party(client: httpx.AsyncClient, email: str) -> dict[str, str]:
    answer = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return bearer(answer.json()["access_token"])


async def refresh(
    client: httpx.AsyncClient, oauth_client: dict[str, Any], refresh_token: str
) -> httpx.Response:
    return await token(
        client, oauth_client, grant_type="refresh_token", refresh_token=refresh_token
    )


async def test_revoking_a_consent_kills_the_refresh_tokens_issued_under_it(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    oauth_client = await register(app, client)
    email = await signed_in(client)
    tokens = await grant(client, oauth_client)
    headers = await first_party(client, email)

    listed = await client.get(CONSENTS, headers=headers)
    assert listed.status_code == 200, listed.text
    assert listed.headers["cache-control"] == "no-store"
    [item] = listed.json()["items"]
    assert item["client_id"] == oauth_client["client_id"]
    assert item["client_name"] == oauth_client["client_name"]
    assert set(item["scope"].split()) == set(OFFLINE.split())
    assert listed.json()["next_cursor"] is None
    # The data export (GET /v1/me/export) lists what the user allowed, too.
    export = await client.get("/v1/me/export", headers=headers)
    assert export.json()["consents"] == [item]

    # The grant works before the revocation ...
    rotated = await refresh(client, oauth_client, tokens["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    live = rotated.json()
    userinfo = await client.get("/oauth2/userinfo", headers=bearer(live["access_token"]))
    assert userinfo.status_code == 200, userinfo.text

    revoked = await client.delete(f"{CONSENTS}/{item['id']}", headers=headers)
    assert revoked.status_code == 204, revoked.text

    # ... and not after it: the refresh token, its access token, the listing.
    dead = await refresh(client, oauth_client, live["refresh_token"])
    assert dead.status_code == 400, dead.text
    assert dead.json()["error"] == "invalid_grant"
    userinfo = await client.get("/oauth2/userinfo", headers=bearer(live["access_token"]))
    assert userinfo.status_code == 401, userinfo.text
    assert (await client.get(CONSENTS, headers=headers)).json()["items"] == []
    # The user's own first-party session is not a grant under the consent.
    assert (await client.get("/v1/me", headers=headers)).status_code == 200

    # The next authorization asks again instead of reusing the revoked consent.
    again = await client.get(
        "/oauth2/authorize", params=auth_params(oauth_client, scope="openid", **pkce_params())
    )
    assert again.status_code == 303, again.text
    assert again.headers["location"].startswith("/ui/consent")

    me = (await client.get("/v1/me", headers=headers)).json()
    async with app.state.services.auth._uow_factory() as uow:
        events = await uow.audit.for_user(uuid.UUID(me["id"]), limit=20)
    [recorded] = [event for event in events if event.type == "oauth.consent_revoked"]
    assert recorded.data == {"consent_id": item["id"], "sessions": 1}


def pkce_params() -> dict[str, str]:
    return {"code_challenge": pkce_pair()[1], "code_challenge_method": "S256"}


async def test_revoking_expires_a_code_not_yet_redeemed(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    oauth_client = await register(app, client)
    email = await signed_in(client)
    verifier, challenge = pkce_pair()
    code, _ = await code_for(
        client, oauth_client, scope=OFFLINE, code_challenge=challenge, code_challenge_method="S256"
    )
    headers = await first_party(client, email)
    [item] = (await client.get(CONSENTS, headers=headers)).json()["items"]
    assert (await client.delete(f"{CONSENTS}/{item['id']}", headers=headers)).status_code == 204

    answer = await token(
        client,
        oauth_client,
        grant_type="authorization_code",
        code=code,
        redirect_uri=oauth_client["redirect_uris"][0],
        code_verifier=verifier,
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_grant"


async def test_other_clients_keep_their_grants_and_the_listing_pages(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    first = await register(app, client, client_name="First")
    second = await register(app, client, client_name="Second")
    email = await signed_in(client)
    first_tokens = await grant(client, first)
    second_tokens = await grant(client, second)
    headers = await first_party(client, email)

    page = await client.get(CONSENTS, params={"limit": 1}, headers=headers)
    assert page.status_code == 200, page.text
    [newest] = page.json()["items"]
    assert newest["client_name"] == "Second"
    cursor = page.json()["next_cursor"]
    assert cursor
    rest = await client.get(CONSENTS, params={"limit": 1, "cursor": cursor}, headers=headers)
    [older] = rest.json()["items"]
    assert older["client_name"] == "First"
    assert rest.json()["next_cursor"] is None

    assert (await client.delete(f"{CONSENTS}/{newest['id']}", headers=headers)).status_code == 204
    assert (await refresh(client, second, second_tokens["refresh_token"])).status_code == 400
    kept = await refresh(client, first, first_tokens["refresh_token"])
    assert kept.status_code == 200, kept.text


async def test_a_consent_that_is_not_yours_answers_like_a_missing_one(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    oauth_client = await register(app, client)
    await signed_in(client)
    tokens = await grant(client, oauth_client)
    # A second person, signed in on another browser, tries the owner's consent id.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as other:
        intruder = await first_party(other, await signed_in(other))
        async with app.state.services.auth._uow_factory() as uow:
            session = await uow.sessions.get(uuid.UUID(_sid(tokens["access_token"])))
        assert session is not None
        assert session.consent_id is not None
        for target in (session.consent_id, uuid.uuid4()):
            answer = await other.delete(f"{CONSENTS}/{target}", headers=intruder)
            assert answer.status_code == 404, answer.text
            assert answer.json()["code"] == "not_found"
        assert (await other.get(CONSENTS, headers=intruder)).json()["items"] == []
        malformed = await other.delete(f"{CONSENTS}/not-a-uuid", headers=intruder)
        assert malformed.status_code == 422
        bad_cursor = await other.get(CONSENTS, params={"cursor": "!!"}, headers=intruder)
        assert bad_cursor.status_code == 422, bad_cursor.text
        assert bad_cursor.json()["errors"][0]["field"] == "cursor"
    # The owner's grant is untouched.
    assert (await refresh(client, oauth_client, tokens["refresh_token"])).status_code == 200


async def test_revoking_twice_and_without_the_scope(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    oauth_client = await register(app, client)
    email = await signed_in(client)
    await grant(client, oauth_client)
    headers = await first_party(client, email)
    [item] = (await client.get(CONSENTS, headers=headers)).json()["items"]

    assert (await client.get(CONSENTS)).status_code == 401
    key = await client.post(
        "/v1/me/api-keys", json={"name": "read only", "scopes": ["me:read"]}, headers=headers
    )
    assert key.status_code == 201, key.text
    read_only = bearer(key.json()["key"])
    assert (await client.get(CONSENTS, headers=read_only)).status_code == 200
    refused = await client.delete(f"{CONSENTS}/{item['id']}", headers=read_only)
    assert refused.status_code == 403, refused.text

    assert (await client.delete(f"{CONSENTS}/{item['id']}", headers=headers)).status_code == 204
    second = await client.delete(f"{CONSENTS}/{item['id']}", headers=headers)
    assert second.status_code == 404, second.text


def _sid(access_token: str) -> str:
    # The test reads its own token; the server verified it when it was issued.
    return str(jwt.decode(access_token, options={"verify_signature": False})["sid"])
