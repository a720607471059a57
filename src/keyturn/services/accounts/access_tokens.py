"""First-party access tokens: JWT per RFC 9068, verified in one call, revocable by ``sid``."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import structlog

from keyturn.domain import SELF_SERVICE_SCOPES, Principal, Session, User, utcnow
from keyturn.domain_mfa import acr_for
from keyturn.errors import DatabaseUnavailable, InvalidToken, SessionRevoked, StoreUnavailable
from keyturn.observability.metrics import REVOCATION_STORE_ERRORS
from keyturn.security.jose import JosePolicy
from keyturn.services.accounts.ports import RevocationStore
from keyturn.services.ports import UnitOfWorkFactory

if TYPE_CHECKING:
    # Only a type: importing signing_keys at run time would close an import cycle
    # (signing_keys -> admin -> accounts).
    from keyturn.services.signing_keys import KeyManager

log = structlog.get_logger(__name__)

ACCESS_TOKEN_TYP = "at+jwt"  # noqa: S105  (RFC 9068 media type, not a secret)
RESTORE_INTERVAL = 5.0


def session_entry(claims: dict[str, Any]) -> str | None:
    """The deny-list entry of a token's session (its ``sid``, as ``is_revoked`` writes it);
    None without a well-formed one."""
    try:
        return str(uuid.UUID(str(claims["sid"])))
    except (KeyError, ValueError):
        return None


class AccessTokenService:
    """Issues and verifies access tokens; the deny-list makes logout reach every replica."""

    def __init__(
        self,
        *,
        keys: KeyManager,
        revocations: RevocationStore,
        uow_factory: UnitOfWorkFactory,
        issuer: str,
        audience: str,
        ttl: int,
    ) -> None:
        self._keys = keys
        self._revocations = revocations
        self._uow_factory = uow_factory
        self._issuer = issuer
        self._audience = audience
        # KEYTURN_AUDIENCE: the client_id of first-party tokens (introspection tells them
        # from OAuth clients' tokens by it).
        self.audience = audience
        self.ttl = ttl
        self._restoring: asyncio.Task[None] | None = None
        self._last_restore = float("-inf")
        # Explicit allow-list: the algorithms the key manager keeps chains for (RFC 8725
        # section 3.1); the key named by kid decides among them (security/jose.py).
        self._policy = JosePolicy(
            algorithms=frozenset(keys.algorithms),
            issuer=issuer,
            audience=audience,
            typ=ACCESS_TOKEN_TYP,
        )

    async def prepare_signing(self) -> None:
        """Call before ``issue``: catches up with a signing key another replica revoked."""
        await self._keys.ensure_signers_current()

    def issue(self, user: User, session: Session) -> str:
        """Signs an RFC 9068 access token for a first-party session (section 2.2 claims)."""
        now = int(utcnow().timestamp())
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "sub": str(user.id),
            "aud": self._audience,
            "exp": now + self.ttl,
            "iat": now,
            "nbf": now,
            "jti": uuid.uuid4().hex,
            "sid": str(session.id),
            "client_id": self._audience,
            "scope": " ".join(SELF_SERVICE_SCOPES),
            "roles": list(user.roles),
            "auth_time": int(session.auth_time.timestamp()),
            "amr": list(session.amr),
        }
        if (acr := acr_for(session.amr)) is not None:
            claims["acr"] = acr
        return self._keys.sign(claims, typ=ACCESS_TOKEN_TYP)

    def issue_for_client(
        self, *, subject: str, client_id: str, scope: str, session: Session | None
    ) -> str:
        """Signs an RFC 9068 access token for an OAuth client (section 2.2 claims).

        ``aud`` is the client_id, so the first-party verifier (``aud`` = ``KEYTURN_AUDIENCE``)
        never accepts it on ``/v1/*``. ``session`` is the grant session of a user token
        (``sid``, ``auth_time``, ``amr``); None for ``client_credentials`` (RFC 6749 section
        4.4), whose subject is the client itself.
        """
        now = int(utcnow().timestamp())
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "sub": subject,
            "aud": client_id,
            "exp": now + self.ttl,
            "iat": now,
            "nbf": now,
            "jti": uuid.uuid4().hex,
            "client_id": client_id,
            "scope": scope,
        }
        if session is not None:
            claims["sid"] = str(session.id)
            claims["auth_time"] = int(session.auth_time.timestamp())
            claims["amr"] = list(session.amr)
            if (acr := acr_for(session.amr)) is not None:
                claims["acr"] = acr
        return self._keys.sign(claims, typ=ACCESS_TOKEN_TYP)

    async def authenticate(self, token: str) -> Principal:
        """Verifies signature and claims, then refuses a revoked session.

        The signing key and the session are looked up on the deny-list in one read.
        """
        claims, denied = await self._keys.verify_session(token, self._policy, session_entry)
        try:
            user_id = uuid.UUID(str(claims["sub"]))
            session_id = uuid.UUID(str(claims["sid"]))
            scope = claims.get("scope", "")
            roles = claims.get("roles", [])
            if not isinstance(scope, str) or not isinstance(roles, list):
                raise TypeError("scope must be a string and roles a list")
        except (KeyError, ValueError, TypeError) as exc:
            raise InvalidToken("The token lacks a valid sub, sid, scope or roles claim.") from exc
        if denied if denied is not None else await self.is_revoked(session_id):
            raise SessionRevoked
        return Principal(
            user_id=user_id,
            session_id=session_id,
            scopes=frozenset(scope.split()),
            roles=tuple(str(role) for role in roles),
            claims=claims,
        )

    async def restore_deny_list(self) -> int:
        """Re-lists every session revoked within the token lifetime (and every recently
        revoked signing key), then seals the list.

        Run at start (an in-process list starts empty; Redis may have restarted empty) and
        after the store was found unsealed. Returns how many sessions were re-listed.
        """
        now = utcnow()
        async with self._uow_factory() as uow:
            revoked = await uow.sessions.revoked_since(now - timedelta(seconds=self.ttl))
        for session_id, revoked_at in revoked:
            remaining = self.ttl - int((now - revoked_at).total_seconds())
            await self._revocations.revoke(str(session_id), max(remaining, 1))
        # Revoked signing keys share the list (signing_keys/revocation.py).
        for entry, seconds_left in await self._keys.revoked_kids():
            await self._revocations.revoke(entry, seconds_left)
        await self._revocations.seal()
        return len(revoked)

    def _restore_soon(self) -> None:
        """Starts one background restore at most every few seconds (while degraded)."""
        moment = time.monotonic()
        if self._restoring is not None or moment - self._last_restore < RESTORE_INTERVAL:
            return
        self._last_restore = moment

        async def restore() -> None:
            try:
                count = await self.restore_deny_list()
                log.info("deny_list_restored", sessions=count)
            except (StoreUnavailable, DatabaseUnavailable):
                pass  # still down: the next failing check tries again later
            finally:
                self._restoring = None

        self._restoring = asyncio.create_task(restore())

    async def is_revoked(self, session_id: uuid.UUID) -> bool:
        """Whether ``session_id`` is on the deny-list (the database when the store is down).

        Access tokens and browser-session cookies both ask here on every request.
        """
        try:
            return await self._revocations.is_revoked(str(session_id))
        except StoreUnavailable:
            # Redis loss degrades to the database, never to "not revoked" (DESIGN.md 6).
            REVOCATION_STORE_ERRORS.labels("is_revoked").inc()
            self._restore_soon()
            async with self._uow_factory() as uow:
                session = await uow.sessions.get(session_id)
            return (
                session is None or session.revoked_at is not None or session.expires_at <= utcnow()
            )

    async def deny(self, session_ids: list[uuid.UUID]) -> None:
        """Puts ended sessions on the shared deny-list for the access-token lifetime."""
        for session_id in session_ids:
            try:
                await self._revocations.revoke(str(session_id), self.ttl)
            except StoreUnavailable:
                # The database already holds the revocation; replicas that fall back to it
                # see it. Logged so operators know the fast path missed one.
                REVOCATION_STORE_ERRORS.labels("revoke").inc()
                log.error("deny_list_write_failed", session_id=str(session_id))
