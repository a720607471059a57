"""What every grant of the token endpoint issues: the RFC 6749 section 5.1 response, the
ID Token (OIDC Core 3.1.3.6 and 12.2) and the ``oauth.token_issued`` audit row."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from keyturn.domain import ClientInfo, OAuthClient, User, utcnow
from keyturn.security.oidc_hashes import at_hash
from keyturn.services.accounts import AccessTokenService
from keyturn.services.audit_batch import AuditBatch
from keyturn.services.oauth2.id_tokens import IdTokenSigner
from keyturn.services.ports import UnitOfWorkFactory


@dataclass(frozen=True, slots=True)
class TokenResponse:
    """RFC 6749 section 5.1 (and OIDC Core section 3.1.3.3 ``id_token``)."""

    access_token: str
    expires_in: int
    scope: str
    refresh_token: str | None = None
    id_token: str | None = None
    token_type: str = "Bearer"  # noqa: S105  (a scheme name, not a secret)

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_in": self.expires_in,
            "scope": self.scope,
        }
        if self.refresh_token is not None:
            body["refresh_token"] = self.refresh_token
        if self.id_token is not None:
            body["id_token"] = self.id_token
        return body


class GrantIssuing:
    """Builds the ID Tokens and audits the grants of the token endpoint."""

    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        access_tokens: AccessTokenService,
        id_tokens: IdTokenSigner,
        issuer: str,
        audit_batch: AuditBatch,
    ) -> None:
        self._uow_factory = uow_factory
        self._audit_batch = audit_batch
        self._access_tokens = access_tokens
        self._id_tokens = id_tokens
        self._issuer = issuer

    def id_token(
        self,
        client: OAuthClient,
        user: User,
        access_token: str,
        now: datetime,
        *,
        auth_time: datetime,
        amr: tuple[str, ...],
        acr: str | None,
        nonce: str | None = None,
        sid: uuid.UUID | None = None,
    ) -> str:
        """OIDC Core sections 2 and 3.1.3.6 (and 12.2 after a refresh)."""
        issued = int(now.timestamp())
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "sub": str(user.id),
            "aud": client.client_id,
            "exp": issued + self._access_tokens.ttl,
            "iat": issued,
            "auth_time": int(auth_time.timestamp()),
            "amr": list(amr),
            # Section 3.1.3.6: hashed with the hash of the ID Token's own algorithm.
            "at_hash": at_hash(access_token, client.id_token_signed_response_alg),
        }
        if sid is not None:
            # The browser session (OIDC Front-/Back-Channel Logout "sid").
            claims["sid"] = str(sid)
        if nonce is not None:
            claims["nonce"] = nonce
        if acr is not None:
            claims["acr"] = acr
        # Section 3.1.3.7: the algorithm the client registered (RS256 by default).
        return self._id_tokens.sign(claims, alg=client.id_token_signed_response_alg)

    async def audit(
        self,
        grant_type: str,
        client: OAuthClient,
        info: ClientInfo,
        *,
        user_id: uuid.UUID | None,
        session_id: uuid.UUID | None,
    ) -> None:
        async with self._uow_factory() as uow:
            await uow.audit.record(
                "oauth.token_issued",
                now=utcnow(),
                user_id=user_id,
                session_id=session_id,
                ip=info.ip,
                data={"client_id": client.client_id, "grant_type": grant_type},
            )
            await uow.commit()

    def audit_queued(self, grant_type: str, client: OAuthClient, info: ClientInfo) -> None:
        """The ``oauth.token_issued`` row of a grant that wrote nothing else (client_credentials).

        Queued, not written: the request makes no database round trip. Its durability
        (at most one flush interval lost on kill -9, never on a graceful stop) is stated
        in ``services/audit_batch.py``; every other grant audits in its own transaction.

        Raises:
            ServiceUnavailable: The queue is full (database down a while): no token.
        """
        self._audit_batch.record(
            "oauth.token_issued",
            now=utcnow(),
            ip=info.ip,
            data={"client_id": client.client_id, "grant_type": grant_type},
        )
