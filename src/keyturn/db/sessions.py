"""The session repository: opening a session is conditional on the user's epoch
(``session_opening.py``). Flushes, never commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import (
    ColumnElement,
    and_,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from keyturn.db.models import (
    OAuthAuthorizationCodeRow,
    SessionRow,
    UserRow,
)
from keyturn.db.session_opening import INSERT_SESSION, session_params, write_signed_in
from keyturn.db.types import affected
from keyturn.db.user_changes import UserChanges
from keyturn.domain import AuditRecord, RefreshToken, Session


def session_from_row(row: SessionRow) -> Session:
    return Session(
        id=row.id,
        user_id=row.user_id,
        created_at=row.created_at,
        last_seen_at=row.last_seen_at,
        expires_at=row.expires_at,
        auth_time=row.auth_time,
        amr=tuple(row.amr),
        ip=row.ip,
        user_agent=row.user_agent,
        revoked_at=row.revoked_at,
        client_id=row.client_id,
        scope=row.scope,
        consent_id=row.consent_id,
    )


class SqlSessionRepository:
    def __init__(self, db: AsyncSession, changes: UserChanges | None = None) -> None:
        self._db = db
        self._changes = changes or UserChanges()

    async def add(self, session: Session, *, epoch: int) -> bool:
        """Opens ``session`` if its user may still have one (see :func:`_new_session_select`).

        Returns:
            False when nothing was written: the user is gone, disabled or locked, or every
            session of the user ended after the credential check that read ``epoch``.
        """
        result = await self._db.execute(INSERT_SESSION, session_params(session, epoch))
        return bool(affected(result))

    async def get(self, session_id: uuid.UUID, *, lock: bool = False) -> Session | None:
        # lock: FOR SHARE (PostgreSQL) to the commit, so a concurrent revoke waits for it.
        row = await self._db.get(
            SessionRow,
            session_id,
            populate_existing=True,
            with_for_update={"read": True} if lock else None,
        )
        return session_from_row(row) if row else None

    async def list_active(
        self,
        user_id: uuid.UUID,
        now: datetime,
        *,
        idle_since: datetime,
        limit: int,
        after: tuple[datetime, uuid.UUID] | None,
    ) -> list[Session]:
        query = (
            select(SessionRow)
            .where(
                SessionRow.user_id == user_id,
                SessionRow.revoked_at.is_(None),
                SessionRow.expires_at > now,
                SessionRow.last_seen_at > idle_since,
            )
            .order_by(SessionRow.created_at.desc(), SessionRow.id.desc())
            .limit(limit)
        )
        if after is not None:
            created, sid = after
            # Keyset pagination, newest first.
            query = query.where(
                or_(
                    SessionRow.created_at < created,
                    and_(SessionRow.created_at == created, SessionRow.id < sid),
                )
            )
        return [session_from_row(row) for row in await self._db.scalars(query)]

    async def list_active_for_users(
        self,
        user_ids: Sequence[uuid.UUID],
        now: datetime,
        *,
        idle_since: datetime,
        limit_per_user: int,
    ) -> list[Session]:
        if not user_ids:
            return []
        # One query for the whole batch (GraphQL dataloader): rank each user's live
        # sessions newest first and keep the first ``limit_per_user`` of each.
        rank = (
            func.row_number()
            .over(
                partition_by=SessionRow.user_id,
                order_by=(SessionRow.created_at.desc(), SessionRow.id.desc()),
            )
            .label("rank")
        )
        ranked = (
            select(SessionRow, rank)
            .where(
                SessionRow.user_id.in_(list(user_ids)),
                SessionRow.revoked_at.is_(None),
                SessionRow.expires_at > now,
                SessionRow.last_seen_at > idle_since,
            )
            .subquery()
        )
        row = aliased(SessionRow, ranked)
        query = (
            select(row)
            .where(ranked.c.rank <= limit_per_user)
            .order_by(row.user_id, row.created_at.desc(), row.id.desc())
        )
        return [session_from_row(item) for item in await self._db.scalars(query)]

    async def touch(self, session_id: uuid.UUID, now: datetime) -> None:
        await self._db.execute(
            update(SessionRow).where(SessionRow.id == session_id).values(last_seen_at=now)
        )

    async def revoke(self, session_id: uuid.UUID, now: datetime, reason: str) -> bool:
        result = await self._db.execute(
            update(SessionRow)
            .where(SessionRow.id == session_id, SessionRow.revoked_at.is_(None))
            .values(revoked_at=now, revoke_reason=reason)
        )
        return bool(affected(result))

    async def revoked_since(self, since: datetime) -> list[tuple[uuid.UUID, datetime]]:
        rows = await self._db.execute(
            select(SessionRow.id, SessionRow.revoked_at).where(SessionRow.revoked_at >= since)
        )
        return [(sid, revoked_at) for sid, revoked_at in rows.all() if revoked_at is not None]

    async def revoke_all(
        self, user_id: uuid.UUID, now: datetime, reason: str, *, keep: uuid.UUID | None = None
    ) -> list[uuid.UUID]:
        # The user row first, always (issue 12 finding 20): the new epoch refuses every
        # session whose credential was checked before this call, and the row lock it takes
        # on PostgreSQL orders this call against session inserts (FOR SHARE of the row):
        # a login that inserted first commits first and is revoked below; one that comes
        # later finds the epoch moved. The same order as a code redemption (user, then
        # code), so the two never deadlock.
        self._changes.mark(user_id)
        await self._db.execute(
            update(UserRow)
            .where(UserRow.id == user_id)
            .values(session_epoch=UserRow.session_epoch + 1)
        )
        condition = [SessionRow.user_id == user_id, SessionRow.revoked_at.is_(None)]
        if keep is not None:
            condition.append(SessionRow.id != keep)
        ended = await self._revoke_where(condition, now, reason)
        # Pending authorization codes approved by the sessions that just ended die with
        # them (issue 12 finding 21): a stolen cookie's code is no 30-day grant.
        codes = [
            OAuthAuthorizationCodeRow.user_id == user_id,
            OAuthAuthorizationCodeRow.used_at.is_(None),
            OAuthAuthorizationCodeRow.expires_at > now,
        ]
        if keep is not None:
            codes.append(OAuthAuthorizationCodeRow.browser_session_id != keep)
        await self._db.execute(
            update(OAuthAuthorizationCodeRow).where(*codes).values(expires_at=now)
        )
        return ended

    async def revoke_for_consent(
        self, consent_id: uuid.UUID, now: datetime, reason: str
    ) -> list[uuid.UUID]:
        condition = [SessionRow.consent_id == consent_id, SessionRow.revoked_at.is_(None)]
        return await self._revoke_where(condition, now, reason)

    async def revoke_for_client(
        self, client_id: str, now: datetime, reason: str
    ) -> list[uuid.UUID]:
        # The partial index on client_id (migration 0013) finds them without a scan.
        condition = [SessionRow.client_id == client_id, SessionRow.revoked_at.is_(None)]
        return await self._revoke_where(condition, now, reason)

    async def _revoke_where(
        self, condition: list[ColumnElement[bool]], now: datetime, reason: str
    ) -> list[uuid.UUID]:
        # The ids first: the caller deny-lists exactly the sessions this call ended.
        ids = list(await self._db.scalars(select(SessionRow.id).where(*condition)))
        if ids:
            await self._db.execute(
                update(SessionRow)
                .where(SessionRow.id.in_(ids), SessionRow.revoked_at.is_(None))
                .values(revoked_at=now, revoke_reason=reason)
            )
        return ids

    async def open_signed_in(
        self,
        session: Session,
        token: tuple[RefreshToken, str] | None,
        event: AuditRecord,
        *,
        epoch: int,
    ) -> bool:
        """:func:`write_signed_in` in this unit of work's transaction."""
        postgresql = self._db.get_bind().dialect.name == "postgresql"
        return await write_signed_in(self._db, session, token, event, epoch, postgresql=postgresql)
