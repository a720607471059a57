"""A user's OAuth consents: what each client was allowed, and taking it back.

Revoking a consent withdraws the client's access granted under it (RFC 6749 section 10.4
leaves revocation to the server; OIDC Core section 11 ties offline access to consent):
the grant sessions opened with it end, so their refresh tokens stop working at once and
their access tokens are refused on every replica (the deny-list), and any authorization
code issued under it but not yet redeemed expires. The next authorization request asks
the user again.
"""

from __future__ import annotations

import uuid

from keyturn.domain import ClientInfo, ConsentListing, Principal, utcnow
from keyturn.errors import NotFound
from keyturn.services.accounts import AccessTokenService
from keyturn.services.admin import record_action
from keyturn.services.paging import Page, decode_cursor, encode_cursor, page_of, time_and_uuid
from keyturn.services.ports import UnitOfWorkFactory


def _cursor(listing: ConsentListing) -> str:
    return encode_cursor(listing.consent.created_at.isoformat(), listing.consent.id)


class ConsentService:
    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        access_tokens: AccessTokenService,
        read_uow_factory: UnitOfWorkFactory,
    ) -> None:
        self._uow_factory = uow_factory
        # Pure reads run on the read-only unit of work (no BEGIN / ROLLBACK on PostgreSQL).
        self._read_uow_factory = read_uow_factory
        self._access_tokens = access_tokens

    async def list_mine(
        self, principal: Principal, *, limit: int, cursor: str | None
    ) -> Page[ConsentListing]:
        """The caller's live consents, newest first."""
        after = decode_cursor(cursor, time_and_uuid, parts=2) if cursor else None
        async with self._read_uow_factory() as uow:
            # One extra row tells whether another page exists.
            rows = await uow.consents.page_for(principal.user_id, limit=limit + 1, after=after)
        return page_of(rows, limit, _cursor)

    async def revoke(self, principal: Principal, consent_id: uuid.UUID, client: ClientInfo) -> None:
        """Revokes one of the caller's consents and everything issued under it.

        Raises:
            NotFound: No live consent of the caller has this id (someone else's consent
                answers exactly like a missing one).
        """
        now = utcnow()
        async with self._uow_factory() as uow:
            if not await uow.consents.revoke(consent_id, principal.user_id, now):
                raise NotFound("No such consent.")
            await uow.authorization_codes.expire_for_consent(consent_id, now)
            ended = await uow.sessions.revoke_for_consent(consent_id, now, "consent_revoked")
            await record_action(
                uow,
                "oauth.consent_revoked",
                principal,
                client,
                {"consent_id": str(consent_id), "sessions": len(ended)},
            )
            await uow.commit()
        await self._access_tokens.deny(ended)
