"""Authorization codes and consents of the OAuth 2.0 code flow (RFC 6749 section 4.1)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from keyturn.db.models import OAuthAuthorizationCodeRow, OAuthClientRow, OAuthConsentRow
from keyturn.db.types import affected
from keyturn.domain import AuthorizationCode, Consent, ConsentListing


def _code(row: OAuthAuthorizationCodeRow) -> AuthorizationCode:
    return AuthorizationCode(
        id=row.id,
        client_id=row.client_id,
        user_id=row.user_id,
        browser_session_id=row.browser_session_id,
        redirect_uri=row.redirect_uri,
        scope=row.scope,
        nonce=row.nonce,
        code_challenge=row.code_challenge,
        auth_time=row.auth_time,
        amr=tuple(row.amr),
        acr=row.acr,
        consent_id=row.consent_id,
        created_at=row.created_at,
        expires_at=row.expires_at,
        used_at=row.used_at,
        issued_session_id=row.issued_session_id,
    )


def _consent(row: OAuthConsentRow) -> Consent:
    return Consent(
        id=row.id,
        user_id=row.user_id,
        client_id=row.client_id,
        scope=row.scope,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


class SqlAuthorizationCodeRepository:
    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    async def add(self, code: AuthorizationCode, digest: str) -> None:
        self._db.add(
            OAuthAuthorizationCodeRow(
                id=code.id,
                digest=digest,
                client_id=code.client_id,
                user_id=code.user_id,
                browser_session_id=code.browser_session_id,
                redirect_uri=code.redirect_uri,
                scope=code.scope,
                nonce=code.nonce,
                code_challenge=code.code_challenge,
                auth_time=code.auth_time,
                amr=list(code.amr),
                acr=code.acr,
                consent_id=code.consent_id,
                created_at=code.created_at,
                expires_at=code.expires_at,
                used_at=code.used_at,
                issued_session_id=code.issued_session_id,
            )
        )
        await self._db.flush()

    async def find(self, digests: Sequence[str]) -> AuthorizationCode | None:
        row = await self._db.scalar(
            select(OAuthAuthorizationCodeRow)
            .where(OAuthAuthorizationCodeRow.digest.in_(list(digests)))
            .limit(1)
            .execution_options(populate_existing=True)
        )
        return _code(row) if row else None

    async def consume(self, code_id: uuid.UUID, now: datetime) -> bool:
        # RFC 6749 section 4.1.2 single use: the WHERE clause is the lock; of N concurrent
        # redemptions exactly one matches the row.
        result = await self._db.execute(
            update(OAuthAuthorizationCodeRow)
            .where(
                OAuthAuthorizationCodeRow.id == code_id,
                OAuthAuthorizationCodeRow.used_at.is_(None),
            )
            .values(used_at=now)
        )
        return bool(affected(result))

    async def set_issued_session(self, code_id: uuid.UUID, session_id: uuid.UUID) -> None:
        await self._db.execute(
            update(OAuthAuthorizationCodeRow)
            .where(OAuthAuthorizationCodeRow.id == code_id)
            .values(issued_session_id=session_id)
        )

    async def expire_for_consent(self, consent_id: uuid.UUID, now: datetime) -> None:
        await self._db.execute(
            update(OAuthAuthorizationCodeRow)
            .where(
                OAuthAuthorizationCodeRow.consent_id == consent_id,
                OAuthAuthorizationCodeRow.used_at.is_(None),
                OAuthAuthorizationCodeRow.expires_at > now,
            )
            .values(expires_at=now)
        )

    async def delete_expired(self, before: datetime) -> int:
        result = await self._db.execute(
            delete(OAuthAuthorizationCodeRow).where(OAuthAuthorizationCodeRow.expires_at < before)
        )
        return affected(result)


class SqlConsentRepository:
    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    async def live_for(self, user_id: uuid.UUID, client_id: str) -> list[Consent]:
        rows = await self._db.scalars(
            select(OAuthConsentRow)
            .where(
                OAuthConsentRow.user_id == user_id,
                OAuthConsentRow.client_id == client_id,
                OAuthConsentRow.revoked_at.is_(None),
            )
            .order_by(OAuthConsentRow.created_at.desc())
        )
        return [_consent(row) for row in rows]

    async def add(self, consent: Consent) -> None:
        self._db.add(
            OAuthConsentRow(
                id=consent.id,
                user_id=consent.user_id,
                client_id=consent.client_id,
                scope=consent.scope,
                created_at=consent.created_at,
                revoked_at=consent.revoked_at,
            )
        )
        await self._db.flush()

    async def page_for(
        self, user_id: uuid.UUID, *, limit: int, after: tuple[datetime, uuid.UUID] | None
    ) -> list[ConsentListing]:
        query = (
            select(OAuthConsentRow, OAuthClientRow.client_name)
            .join(OAuthClientRow, OAuthClientRow.client_id == OAuthConsentRow.client_id)
            .where(OAuthConsentRow.user_id == user_id, OAuthConsentRow.revoked_at.is_(None))
        )
        if after is not None:
            created, consent_id = after
            query = query.where(
                or_(
                    OAuthConsentRow.created_at < created,
                    and_(OAuthConsentRow.created_at == created, OAuthConsentRow.id < consent_id),
                )
            )
        rows = await self._db.execute(
            query.order_by(OAuthConsentRow.created_at.desc(), OAuthConsentRow.id.desc()).limit(
                limit
            )
        )
        return [ConsentListing(_consent(row), name) for row, name in rows.all()]

    async def revoke(self, consent_id: uuid.UUID, user_id: uuid.UUID, now: datetime) -> bool:
        # The WHERE clause makes it atomic and owner-bound: someone else's consent, or one
        # already revoked, matches no row.
        result = await self._db.execute(
            update(OAuthConsentRow)
            .where(
                OAuthConsentRow.id == consent_id,
                OAuthConsentRow.user_id == user_id,
                OAuthConsentRow.revoked_at.is_(None),
            )
            .values(revoked_at=now)
        )
        return bool(affected(result))
