"""``POST /oauth2/token``: PKCE, single use, replay revocation, client binding, refresh
rotation, client_credentials and client authentication (RFC 6749 sections 4.1.3, 4.4, 6;
RFC 7636; RFC 9700 section 2.1.1)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
import time_machine
from fastapi import FastAPI
from sqlalchemy import select

from helpers import bearer, lifespan, signup_login
from keyturn.app import create_app
from keyturn.config import Settings
from keyturn.db.engine import create_engine
from keyturn.db.models import SessionRow
from keyturn.domain import utcnow
from oauth_helpers import REDIRECT, code_for, pkce_pair, redeem, register, signed_in, token

pytestmark = pytest.mark.anyio


def error_of(answer: httpx.Response) -> str:
    assert answer.headers["cache-control"] == "no-store"
    return str(answer.json()["error"])


@pytest.fixture
async def roomy_app(make_settings: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    """The app with room for many failed redemptions (each counts toward the limit)."""
    application = create_app(make_settings(limit_failures_per_account_ip=1000))
    async with lifespan(application):
        yield application


async def test_pkce_matrix(roomy_app: FastAPI) -> None:
    """Only a valid S256 pair succeeds; a verifier without a challenge is a downgrade."""
    transport = httpx.ASGITransport(app=roomy_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        await _pkce_matrix(roomy_app, client)


async def test_failed_redemptions_are_throttled(app: FastAPI, client: httpx.AsyncClient) -> None:
    """Code guessing counts through the credential guard: 429 after the limit."""
    oauth_client = await register(app, client, require_pkce=False)
    statuses = [
        (
            await token(client, oauth_client, grant_type="authorization_code", code="A" * 43)
        ).status_code
        for _ in range(12)
    ]
    assert statuses[0] == 400
    assert statuses[-1] == 429


async def _pkce_matrix(app: FastAPI, client: httpx.AsyncClient) -> None:
    oauth_client = await register(app, client, require_pkce=False)
    await signed_in(client)
    verifiers: dict[str, str | None] = {
        "absent": None,
        "valid": "",
        "malformed": "not a verifier!" * 4,
        "len42": "a" * 42,
        "len129": "a" * 129,
    }
    for with_challenge in (True, False):
        for kind, verifier in verifiers.items():
            good, challenge = pkce_pair()
            extra = (
                {"code_challenge": challenge, "code_challenge_method": "S256"}
                if with_challenge
                else {}
            )
            code, _ = await code_for(client, oauth_client, **extra)
            presented = good if verifier == "" else verifier
            answer = await redeem(client, oauth_client, code, presented)
            succeeds = (with_challenge and kind == "valid") or (
                not with_challenge and kind == "absent"
            )
            if succeeds:
                assert answer.status_code == 200, (with_challenge, kind, answer.text)
                continue
            assert answer.status_code == 400, (with_challenge, kind)
            assert error_of(answer) == "invalid_grant", (with_challenge, kind)
            # A failed check burns the code (authentik CVE-2023-48228).
            retry = await redeem(client, oauth_client, code, good if with_challenge else None)
            assert retry.status_code == 400
            assert error_of(retry) == "invalid_grant"


async def session_row(settings: Settings, session_id: str) -> Any:
    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as connection:
            return (
                await connection.execute(
                    select(SessionRow).where(SessionRow.id == uuid.UUID(session_id))
                )
            ).one()
    finally:
        await engine.dispose()


async def test_code_reuse_revokes_what_it_issued(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    oauth_client = await register(app, client)
    await signed_in(client)
    verifier, challenge = pkce_pair()
    code, _ = await code_for(
        client,
        oauth_client,
        scope="openid offline_access",
        code_challenge=challenge,
        code_challenge_method="S256",
    )
    first = await redeem(client, oauth_client, code, verifier)
    assert first.status_code == 200
    sid = jwt.decode(first.json()["access_token"], options={"verify_signature": False})["sid"]
    again = await redeem(client, oauth_client, code, verifier)
    assert again.status_code == 400
    assert error_of(again) == "invalid_grant"
    # RFC 6749 section 4.1.2: the tokens of the first redemption are revoked.
    row = await session_row(settings, sid)
    assert row.revoked_at is not None
    assert row.revoke_reason == "code_replayed"
    refresh = await token(
        client,
        oauth_client,
        grant_type="refresh_token",
        refresh_token=first.json()["refresh_token"],
    )
    assert error_of(refresh) == "invalid_grant"
    assert await app.state.services.access_tokens.is_revoked(uuid.UUID(sid))


async def test_code_of_another_client_and_other_redirect(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    mine = await register(app, client, require_pkce=False)
    other = await register(app, client, require_pkce=False)
    await signed_in(client)
    code, _ = await code_for(client, mine)
    stolen = await redeem(client, other, code)
    assert error_of(stolen) == "invalid_grant"
    wrong_uri = await redeem(client, mine, code, redirect_uri=REDIRECT + "/")
    assert error_of(wrong_uri) == "invalid_grant"


async def test_expired_code(app: FastAPI, client: httpx.AsyncClient) -> None:
    oauth_client = await register(app, client, require_pkce=False)
    await signed_in(client)
    code, _ = await code_for(client, oauth_client)
    with time_machine.travel(utcnow() + timedelta(seconds=61), tick=True):
        answer = await redeem(client, oauth_client, code)
    assert error_of(answer) == "invalid_grant"
    assert "expired" in answer.json()["error_description"]


async def test_refresh_token_needs_offline_access_and_stays_with_its_client(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    mine = await register(app, client, require_pkce=False)
    other = await register(app, client, require_pkce=False)
    await signed_in(client)
    code, _ = await code_for(client, mine, scope="openid me:read")
    plain = await redeem(client, mine, code)
    assert plain.status_code == 200
    assert "refresh_token" not in plain.json()
    code, _ = await code_for(client, mine, scope="openid offline_access me:read")
    body = (await redeem(client, mine, code)).json()
    refresh = body["refresh_token"]
    foreign = await token(client, other, grant_type="refresh_token", refresh_token=refresh)
    assert error_of(foreign) == "invalid_grant"
    # Narrowed, never widened (RFC 6749 section 6).
    wider = await token(
        client, mine, grant_type="refresh_token", refresh_token=refresh, scope="openid email"
    )
    assert error_of(wider) == "invalid_scope"
    # The refused request rotated nothing: past the reuse grace the token still works
    # (had it been rotated, presenting it now would revoke the whole grant).
    with time_machine.travel(utcnow() + timedelta(minutes=5), tick=True):
        narrow = await token(
            client, mine, grant_type="refresh_token", refresh_token=refresh, scope="me:read"
        )
        # The grace rule of DESIGN.md section 4 holds here too: the same successor again.
        grace = await token(client, mine, grant_type="refresh_token", refresh_token=refresh)
    assert narrow.status_code == 200, narrow.text
    assert narrow.json()["scope"] == "me:read"
    # Without openid in the (narrowed) scope, no ID Token (OIDC Core section 12.2).
    assert "id_token" not in narrow.json()
    assert grace.json()["refresh_token"] == narrow.json()["refresh_token"]
    assert grace.json()["id_token"]  # the full grant includes openid
    # A first-party refresh token is not an OAuth one, and the other way round.
    first_party = await signup_login(client)
    mixed = await token(
        client, mine, grant_type="refresh_token", refresh_token=first_party["refresh_token"]
    )
    assert error_of(mixed) == "invalid_grant"
    api = await client.post(
        "/v1/auth/refresh", json={"refresh_token": narrow.json()["refresh_token"]}
    )
    assert api.status_code == 401


async def test_client_credentials_tokens_are_refused_on_user_endpoints(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    service = await register(
        app,
        client,
        grant_types=["client_credentials"],
        redirect_uris=[],
        scope="me:read users:read",
    )
    answer = await token(client, service, grant_type="client_credentials")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert "refresh_token" not in body
    assert "id_token" not in body
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == service["client_id"]
    assert claims["aud"] == service["client_id"]
    assert "sid" not in claims
    for path in ("/v1/me", "/v1/me/sessions", "/v1/admin/users"):
        refused = await client.get(path, headers=bearer(body["access_token"]))
        assert refused.status_code == 401, path
    narrower = await token(client, service, grant_type="client_credentials", scope="users:read")
    assert narrower.json()["scope"] == "users:read"
    wider = await token(client, service, grant_type="client_credentials", scope="keys:write")
    assert error_of(wider) == "invalid_scope"


async def test_user_tokens_of_a_client_are_refused_on_user_endpoints(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    oauth_client = await register(app, client, require_pkce=False)
    await signed_in(client)
    code, _ = await code_for(client, oauth_client, scope="openid me:read")
    access = (await redeem(client, oauth_client, code)).json()["access_token"]
    # aud is the client, not Keyturn's own API (RFC 9068 section 4).
    assert (await client.get("/v1/me", headers=bearer(access))).status_code == 401


async def test_grant_type_rules(app: FastAPI, client: httpx.AsyncClient) -> None:
    oauth_client = await register(app, client, require_pkce=False)
    unsupported = await token(client, oauth_client, grant_type="password")
    assert error_of(unsupported) == "unsupported_grant_type"
    missing = await token(client, oauth_client)
    assert error_of(missing) == "invalid_request"
    not_allowed = await token(client, oauth_client, grant_type="client_credentials")
    assert error_of(not_allowed) == "unauthorized_client"
    unknown_code = await token(client, oauth_client, grant_type="authorization_code", code="A" * 43)
    assert error_of(unknown_code) == "invalid_grant"
    json_body = await client.post(
        "/oauth2/token",
        json={"grant_type": "client_credentials"},
        auth=httpx.BasicAuth(oauth_client["client_id"], oauth_client["client_secret"]),
    )
    assert json_body.status_code == 400


async def test_client_authentication_failure(app: FastAPI, client: httpx.AsyncClient) -> None:
    oauth_client = await register(app, client, require_pkce=False)
    wrong = await client.post(
        "/oauth2/token",
        data={"grant_type": "authorization_code", "code": "A" * 43},
        auth=httpx.BasicAuth(oauth_client["client_id"], "wrong secret"),
    )
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == 'Basic realm="keyturn"'
    assert wrong.json()["error"] == "invalid_client"
    assert wrong.headers["cache-control"] == "no-store"
    nobody = await client.post("/oauth2/token", data={"grant_type": "client_credentials"})
    assert nobody.status_code == 401


async def test_public_client_flow(app: FastAPI, client: httpx.AsyncClient) -> None:
    public = await register(
        app,
        client,
        token_endpoint_auth_method="none",
        redirect_uris=[REDIRECT],
    )
    await signed_in(client)
    verifier, challenge = pkce_pair()
    code, _ = await code_for(client, public, code_challenge=challenge, code_challenge_method="S256")
    answer = await redeem(client, public, code, verifier)
    assert answer.status_code == 200, answer.text


async def test_discovery_documents(client: httpx.AsyncClient, settings: Settings) -> None:
    first = await client.get("/.well-known/openid-configuration")
    second = await client.get("/.well-known/oauth-authorization-server")
    assert first.status_code == second.status_code == 200
    document = first.json()
    assert document == second.json()
    assert document["issuer"] == settings.issuer
    assert document["authorization_endpoint"] == settings.issuer + "/oauth2/authorize"
    assert document["token_endpoint"] == settings.issuer + "/oauth2/token"
    assert document["response_types_supported"] == ["code"]
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["authorization_response_iss_parameter_supported"] is True
    assert "RS256" in document["id_token_signing_alg_values_supported"]
    assert document["introspection_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
    ]
    # Every endpoint the document names answers (POST-only ones with a POST).
    posted = {"token_endpoint", "introspection_endpoint", "revocation_endpoint"}
    named = [name for name in document if name.endswith("_endpoint") or name == "jwks_uri"]
    assert set(named) == {
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "userinfo_endpoint",
        "introspection_endpoint",
        "revocation_endpoint",
        "end_session_endpoint",
    }
    for name in named:
        path = document[name].removeprefix(settings.issuer)
        method = client.post if name in posted else client.get
        answer = await method(path)
        assert answer.status_code not in (404, 405), (name, answer.status_code)


async def test_concurrent_redemptions_on_postgres(
    app: FastAPI, client: httpx.AsyncClient, backend: str, settings: Settings
) -> None:
    """20 redemptions of one code at once: exactly one wins, and the replays revoke it."""
    if backend != "postgres":
        pytest.skip("row locking under concurrency is a PostgreSQL property")
    oauth_client = await register(app, client, require_pkce=False)
    await signed_in(client)
    code, _ = await code_for(client, oauth_client, scope="openid offline_access")
    answers = await asyncio.gather(*(redeem(client, oauth_client, code) for _ in range(20)))
    winners = [answer for answer in answers if answer.status_code == 200]
    assert len(winners) == 1
    assert all(error_of(a) == "invalid_grant" for a in answers if a.status_code != 200)
    sid = jwt.decode(winners[0].json()["access_token"], options={"verify_signature": False})["sid"]
    row = await session_row(settings, sid)
    assert row.revoked_at is not None
    refresh = await token(
        client,
        oauth_client,
        grant_type="refresh_token",
        refresh_token=winners[0].json()["refresh_token"],
    )
    assert error_of(refresh) == "invalid_grant"
