"""Stand-in for the token endpoint until the OAuth flows can be driven end to end.

``POST /oauth2/token`` is built on another branch. Until it lands, these helpers write
exactly what it will write for a grant, through the app's own code: a client registered
with ``POST /v1/admin/clients``, a grant ``Session`` (``client_id`` and ``scope`` set)
through the unit of work, a refresh token through the rotation code's own
``AuthService._add_refresh_token`` and an RFC 9068 access token signed by the app's key
manager with ``aud`` = ``client_id`` = the client and ``sid`` = the grant session. Once
the code flow exists, replace :func:`issue_grant` with a run of /oauth2/authorize and
/oauth2/token and delete this module.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from helpers import PASSWORD, bearer, new_email
from keyturn.domain import Session, User, utcnow
from keyturn.services.access_tokens import ACCESS_TOKEN_TYP
from keyturn.services.registry import Services

WEB_CLIENT = {
    "client_name": "Web app",
    "redirect_uris": ["https://app.example.com/callback"],
    "grant_types": ["authorization_code", "refresh_token"],
    "scope": "offline_access openid profile email me:read",
}


@dataclass(frozen=True)
class Grant:
    client_id: str
    user_id: uuid.UUID
    session_id: uuid.UUID
    access_token: str
    refresh_token: str
    scope: str


async def admin_headers(app: FastAPI, client: httpx.AsyncClient) -> dict[str, str]:
    email = f"admin-{uuid.uuid4().hex[:12]}@example.com"
    await app.state.services.users.create_admin(email, PASSWORD)
    answer = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return bearer(answer.json()["access_token"])


async def register_client(
    client: httpx.AsyncClient, headers: dict[str, str], **metadata: Any
) -> dict[str, Any]:
    """Registers a client through the admin API; the answer holds ``client_secret``."""
    answer = await client.post(
        "/v1/admin/clients", json={**WEB_CLIENT, **metadata}, headers=headers
    )
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def basic(client_id: str, secret: str) -> dict[str, str]:
    """RFC 6749 section 2.3.1 HTTP Basic (our ids and secrets need no form-encoding)."""
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


async def new_user(client: httpx.AsyncClient, services: Services, *, name: str | None) -> User:
    email = new_email()
    body: dict[str, Any] = {"email": email, "password": PASSWORD}
    if name is not None:
        body["name"] = name
    answer = await client.post("/v1/auth/signup", json=body)
    assert answer.status_code == 202, answer.text
    async with services.auth._uow_factory() as uow:
        user = await uow.users.get_by_email(email)
    assert user is not None
    return user


async def issue_grant(
    services: Services,
    *,
    client_id: str,
    user: User,
    scope: str,
    access_ttl: int | None = None,
) -> Grant:
    """What /oauth2/token writes for an authorization_code grant with offline_access."""
    now = utcnow()
    auth = services.auth
    session = Session(
        id=uuid.uuid4(),
        user_id=user.id,
        created_at=now,
        last_seen_at=now,
        expires_at=now + auth._refresh_ttl,
        auth_time=now,
        amr=("pwd",),
        ip="203.0.113.9",
        user_agent="oauth-helper",
        client_id=client_id,
        scope=scope,
    )
    async with auth._uow_factory() as uow:
        await uow.sessions.add(session)
        refresh_token = await auth._add_refresh_token(uow, session)
        await uow.commit()
    access_token = mint_access_token(
        services,
        client_id=client_id,
        subject=str(user.id),
        sid=session.id,
        scope=scope,
        ttl=access_ttl,
    )
    return Grant(
        client_id=client_id,
        user_id=user.id,
        session_id=session.id,
        access_token=access_token,
        refresh_token=refresh_token,
        scope=scope,
    )


def mint_access_token(
    services: Services,
    *,
    client_id: str,
    subject: str,
    sid: uuid.UUID,
    scope: str,
    ttl: int | None = None,
    issued: int | None = None,
) -> str:
    """An RFC 9068 access token for ``client_id``, signed like every other access token."""
    now = issued if issued is not None else int(utcnow().timestamp())
    lifetime = services.access_tokens.ttl if ttl is None else ttl
    claims = {
        "iss": services.access_tokens._issuer,
        "sub": subject,
        "aud": client_id,
        "exp": now + lifetime,
        "iat": now,
        "nbf": now,
        "jti": uuid.uuid4().hex,
        "sid": str(sid),
        "client_id": client_id,
        "scope": scope,
        "auth_time": now,
        "amr": ["pwd"],
    }
    return services.keys.sign(claims, typ=ACCESS_TOKEN_TYP)


def expired_seconds_ago(seconds: int) -> int:
    """An ``issued`` time whose token (with the default TTL 600) expired ``seconds`` ago."""
    return int((utcnow() - timedelta(seconds=600 + seconds)).timestamp())
