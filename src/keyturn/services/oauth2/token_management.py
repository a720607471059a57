"""Token introspection (RFC 7662) and revocation (RFC 7009) for OAuth clients.

Confidential clients may introspect any access token; refresh tokens and revocation only
concern the caller's own grants; a grant is reported as it stands now.
See docs/technical/2026-11-26_backend_security-implementation.md (V10).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from keyturn.domain import ClientInfo, OAuthClient, RefreshToken, Session, User, utcnow
from keyturn.errors import InvalidToken
from keyturn.security.digests import Digester, KeyRing
from keyturn.security.jose import JosePolicy
from keyturn.services.accounts import ACCESS_TOKEN_TYP, AccessTokenService
from keyturn.services.oauth2.client_cache import ClientCache
from keyturn.services.oauth2.grant_scope import (
    client_grant_scope,
    issued_before_revocation,
    refreshable,
    user_grant_scope,
)
from keyturn.services.ports import UnitOfWorkFactory
from keyturn.services.signing_keys import KeyManager

ACCESS_TOKEN = "access_token"  # noqa: S105  (RFC 7662 token_type_hint value, not a secret)
REFRESH_TOKEN = "refresh_token"  # noqa: S105  (RFC 7009 section 2.1 hint value, not a secret)
# The claims of an active access token's introspection answer (RFC 7662 section 2.2).
# No username and no email: personal data the resource server can get from userinfo with
# the user's consent; introspection answers carry identifiers only (DESIGN.md section 5).
_ACCESS_CLAIMS = ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "nbf", "jti", "sid")
# new_token(32): 43 URL-safe characters; anything else is no refresh token (no lookup).
_REFRESH_SHAPE = re.compile(r"^[A-Za-z0-9_-]{43}$")
INACTIVE: dict[str, Any] = {"active": False}


@dataclass(frozen=True, slots=True)
class FoundRefreshToken:
    token: RefreshToken
    session: Session
    user: User
    # The user's current permissions (the grant is narrowed to them).
    held: frozenset[str]


class OAuthTokenService:
    """Looks tokens up for introspection, revocation and userinfo."""

    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        keys: KeyManager,
        access_tokens: AccessTokenService,
        key_ring: KeyRing,
        issuer: str,
        idle_ttl: int,
        clients: ClientCache,
        read_uow_factory: UnitOfWorkFactory | None = None,
    ) -> None:
        self._uow_factory = uow_factory
        # Units of work that only read (one round trip per SELECT where the store allows).
        self._read_uow_factory = read_uow_factory or uow_factory
        self._keys = keys
        self._access_tokens = access_tokens
        # The token's client, read through the per-process cache (no database when warm).
        self._clients = clients
        # The same digest label as the rotation code (services/auth.py): one lookup.
        self._digester = Digester(key_ring, "refresh-token")
        self._issuer = issuer
        self._idle_ttl = timedelta(seconds=idle_ttl)
        # RFC 9068 section 4 validation for every client's tokens: the alg allow-list,
        # kid, typ at+jwt, iss, exp, nbf, iat, and aud equal to the token's own client_id.
        self._policy = JosePolicy(
            algorithms=frozenset(keys.algorithms),
            issuer=issuer,
            audience="",
            audience_claim="client_id",
            typ=ACCESS_TOKEN_TYP,
        )

    async def access_token_claims(self, token: str) -> dict[str, Any] | None:
        """The claims of a valid, unrevoked access token; None for anything else."""
        if not token or "." not in token:
            return None
        try:
            claims = await self._keys.verify(token, self._policy)
        except InvalidToken:
            return None
        if "sid" not in claims:
            # RFC 6749 section 4.4 / RFC 9068 section 2.2: a client_credentials token has no
            # session and names the client itself as its subject; anything else without
            # a sid is no token of ours.
            return claims if claims.get("sub") == claims.get("client_id") else None
        try:
            session_id = uuid.UUID(str(claims["sid"]))
        except ValueError:
            return None
        if await self._access_tokens.is_revoked(session_id):
            return None
        return claims

    async def current_scope(
        self, claims: dict[str, Any], caller: OAuthClient | None = None
    ) -> frozenset[str]:
        """What the access token with ``claims`` covers now; empty when nothing.

        First-party tokens carry the self-service scopes every user holds. An OAuth
        token is narrowed to its client's current registration and, for a user's grant,
        to the user's current permissions; it covers nothing once its client is gone or
        revoked its tokens after ``iat``. ``caller``: the authenticated client, whose
        fresh record saves a read when the token is its own.
        """
        granted, client_id, issued = claims.get("scope"), claims.get("client_id"), claims["iat"]
        if not isinstance(granted, str) or not isinstance(issued, int):
            return frozenset()
        user_grant = "sid" in claims
        if user_grant and client_id == self._access_tokens.audience:
            return frozenset(granted.split())
        try:
            user_id = uuid.UUID(str(claims["sub"])) if user_grant else None
        except ValueError:
            return frozenset()
        client = caller if caller is not None and caller.client_id == client_id else None
        if client is None:
            found = await self._clients.find(str(client_id))
            client = found[0] if found is not None else None
        held = None
        if user_id is not None and client is not None:
            # Only the database knows the user's permissions now (a lost role narrows every
            # later answer); a client_credentials token needs no unit of work at all.
            async with self._read_uow_factory() as uow:
                held = await uow.roles.permissions_of(user_id)
        if client is None or issued_before_revocation(client, issued):
            return frozenset()
        if user_id is not None:
            return user_grant_scope(granted, client, held or frozenset())
        return client_grant_scope(granted, client)

    def _live(self, session: Session, now: datetime) -> bool:
        return (
            session.revoked_at is None
            and now < session.expires_at
            and now < session.last_seen_at + self._idle_ttl
        )

    async def _refresh_token(self, value: str) -> FoundRefreshToken | None:
        if not _REFRESH_SHAPE.match(value):
            return None
        async with self._read_uow_factory() as uow:
            # One statement: the token, its session, its user and the user's permissions.
            found = await uow.refresh_tokens.find_with_session(self._digester.candidates(value))
        if found is None:
            return None
        token, session, user, held = found
        return FoundRefreshToken(token=token, session=session, user=user, held=held)

    async def introspect(self, token: str, hint: str | None, client: OAuthClient) -> dict[str, Any]:
        """RFC 7662 section 2.2 answer for ``token`` as seen by the authenticated ``client``.

        ``hint`` only decides which kind is looked up first (section 2.1); an unknown hint
        is ignored. Every failure is the bare ``{"active": false}``.
        """
        for kind in _lookup_order(hint):
            if kind == ACCESS_TOKEN:
                claims = await self.access_token_claims(token)
                if claims is not None:
                    return await self._access_answer(claims, client)
            else:
                found = await self._refresh_token(token)
                if found is not None:
                    return self._refresh_answer(found, client)
        return dict(INACTIVE)

    async def _access_answer(self, claims: dict[str, Any], client: OAuthClient) -> dict[str, Any]:
        scope = await self.current_scope(claims, client)
        if not scope:
            return dict(INACTIVE)
        answer = {name: claims[name] for name in _ACCESS_CLAIMS if name in claims}
        answer["scope"] = " ".join(sorted(scope))
        if "sid" not in claims:
            # A client_credentials token: its sub is the client, not a user a resource
            # server could mistake it for (client_id already names the client).
            del answer["sub"]
        return {"active": True, **answer, "token_type": ACCESS_TOKEN}

    def _refresh_answer(self, found: FoundRefreshToken, client: OAuthClient) -> dict[str, Any]:
        token, session, user = found.token, found.session, found.user
        now = utcnow()
        # What a refresh would get now (the same rule as the token endpoint).
        scope = user_grant_scope(session.scope or "", client, found.held)
        # Only the current (unrotated) token is active. The reuse grace (DESIGN.md section
        # 4) is a retry allowance of the refresh call, not a second valid token: during the
        # window the predecessor can only return its successor, so it is reported inactive.
        if (
            session.client_id != client.client_id
            or "refresh_token" not in client.grant_types
            or not refreshable(scope)
            or token.rotated_at is not None
            or not self._live(session, now)
            or user.disabled
            or user.locked(now)
        ):
            return dict(INACTIVE)
        expires = min(session.expires_at, session.last_seen_at + self._idle_ttl)
        return {
            "active": True,
            "scope": " ".join(sorted(scope)),
            "client_id": session.client_id,
            "sub": str(session.user_id),
            "iss": self._issuer,
            "exp": int(expires.timestamp()),
            "iat": int(token.created_at.timestamp()),
            "sid": str(session.id),
            "token_type": REFRESH_TOKEN,
        }

    async def revoke(
        self, token: str, hint: str | None, client: OAuthClient, info: ClientInfo
    ) -> None:
        """RFC 7009 section 2.1: ends the grant ``token`` belongs to, if it is ``client``'s.

        A refresh token ends its grant session, so every refresh token of the grant dies
        with it (section 2.1: "SHOULD also invalidate all access tokens based on the same
        authorization grant"), and the ``sid`` goes on the deny-list for the access-token
        lifetime, which stops the grant's access tokens on every replica. Revoking an
        access token does the same (section 2.1 "MAY revoke the respective refresh
        token"): with self-contained JWTs the only way to stop one is its session. A
        rotated refresh token of the grant counts too: revoking more is the safe side.
        Unknown, invalid, expired and foreign tokens (other clients', first-party ones)
        are left alone, silently (section 2.2).
        """
        session_id: uuid.UUID | None = None
        kind = ""
        for kind in _lookup_order(hint):
            if kind == ACCESS_TOKEN:
                claims = await self.access_token_claims(token)
                if claims is not None and claims.get("client_id") == client.client_id:
                    if "sid" not in claims:
                        # A client_credentials token has no grant session to end; it dies
                        # with the client or a secret rotation with revoke_tokens.
                        return
                    session_id = uuid.UUID(str(claims["sid"]))
                    break
            else:
                found = await self._refresh_token(token)
                if found is not None:
                    session_id = found.session.id
                    break
        if session_id is None:
            return
        now = utcnow()
        async with self._uow_factory() as uow:
            session = await uow.sessions.get(session_id)
            # Only the client's own grant: first-party sessions have no client_id.
            if session is None or session.client_id != client.client_id:
                return
            ended = await uow.sessions.revoke(session.id, now, "oauth_revoked")
            if ended:
                await uow.audit.record(
                    "oauth.token_revoked",
                    now=now,
                    user_id=session.user_id,
                    session_id=session.id,
                    ip=info.ip,
                    data={"client_id": client.client_id, "token_type": kind},
                )
            await uow.commit()
        await self._access_tokens.deny([session.id])


def _lookup_order(hint: str | None) -> tuple[str, str]:
    # RFC 7662 section 2.1 / RFC 7009 section 2.1: the hint is only a hint; the server
    # extends its search to every kind, and an unknown hint value is not an error here.
    if hint == REFRESH_TOKEN:
        return (REFRESH_TOKEN, ACCESS_TOKEN)
    return (ACCESS_TOKEN, REFRESH_TOKEN)
