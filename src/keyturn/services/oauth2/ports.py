"""The storage ports of the OAuth 2.0 provider: clients, authorization codes, consents.

Met structurally by ``keyturn.db`` (``oauth_clients``, ``oauth_grants``); the unit of work
(``keyturn.services.ports.UnitOfWork``) hands them out as ``clients``,
``authorization_codes`` and ``consents``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from keyturn.domain import AuthorizationCode, Consent, ConsentListing, OAuthClient

__all__ = [
    "AuthorizationCodeRepository",
    "ConsentRepository",
    "OAuthClientRepository",
]


class OAuthClientRepository(Protocol):
    async def add(self, client: OAuthClient, secret_digest: str | None) -> bool:
        """Inserts the client; False when its client_id is taken (nothing written)."""

    async def find(self, client_id: str) -> tuple[OAuthClient, str | None] | None:
        """The client and its stored secret digest (None for a public client)."""

    async def cors_origins(self) -> frozenset[str]:
        """Every origin some client lists in ``allowed_cors_origins``."""

    async def page(self, *, limit: int, after: tuple[datetime, str] | None) -> list[OAuthClient]:
        """Clients by (created_at, client_id), oldest first, after the keyset ``after``."""

    async def update(self, client: OAuthClient) -> bool:
        """Writes the metadata (never the secret); False when the client does not exist."""

    async def set_secret(
        self, client_id: str, digest: str, now: datetime, *, revoke_tokens: bool = False
    ) -> bool:
        """Replaces the secret digest (``revoke_tokens``: tokens issued until ``now`` die)."""

    async def delete(self, client_id: str) -> bool:
        """Removes the client and, by cascade, its authorization codes and consents."""


class AuthorizationCodeRepository(Protocol):
    async def add(self, code: AuthorizationCode, digest: str) -> None: ...
    async def find(self, digests: Sequence[str]) -> AuthorizationCode | None: ...
    async def consume(self, code_id: uuid.UUID, now: datetime) -> bool:
        """Marks the code used; True for exactly one caller (RFC 6749 section 4.1.2)."""

    async def set_issued_session(self, code_id: uuid.UUID, session_id: uuid.UUID) -> None:
        """Remembers the grant session the code opened (revoked if the code is replayed)."""

    async def expire_for_consent(self, consent_id: uuid.UUID, now: datetime) -> None:
        """Makes every unused code issued under the consent expire ``now``."""

    async def delete_expired(self, before: datetime) -> int:
        """Deletes codes that expired before ``before``; returns how many."""


class ConsentRepository(Protocol):
    async def live_for(self, user_id: uuid.UUID, client_id: str) -> list[Consent]:
        """The user's unrevoked consents for the client, newest first."""

    async def add(self, consent: Consent) -> None: ...
    async def page_for(
        self, user_id: uuid.UUID, *, limit: int, after: tuple[datetime, uuid.UUID] | None
    ) -> list[ConsentListing]:
        """The user's unrevoked consents, newest first, after the keyset ``after``."""

    async def revoke(self, consent_id: uuid.UUID, user_id: uuid.UUID, now: datetime) -> bool:
        """Revokes the user's consent; False when it is not theirs or already revoked."""
