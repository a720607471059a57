"""The session repository: opening a session is conditional on the user's epoch. Flushes,
never commits."""

from __future__ import annotations

import typing
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    bindparam,
    false,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import aliased

from keyturn.db.audit import INSERT_UNSEALED, UNSEALED_COLUMNS, audit_values
from keyturn.db.models import (
    AuditEventRow,
    OAuthAuthorizationCodeRow,
    RefreshTokenRow,
    SessionRow,
    UserRow,
)
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


_SESSION_FIELDS = (
    "id",
    "user_id",
    "created_at",
    "last_seen_at",
    "expires_at",
    "auth_time",
    "amr",
    "ip",
    "user_agent",
    "client_id",
    "scope",
    "consent_id",
)


def _new_session_select() -> Any:
    """``SELECT <the new session's values> FROM users WHERE <the user may open it>``.

    The condition of every session insert (issue 12 finding 20): the user still exists,
    is neither disabled nor locked, and its ``session_epoch`` is the one the credential
    check read. Whatever ended every session in between (password change or reset, lock,
    disable, delete, "end my other sessions") bumped the epoch, so the insert writes
    nothing. ``FOR SHARE`` locks the user row on PostgreSQL until the commit: a
    ``revoke_all`` in flight (which updates the row first) is waited for and its new epoch
    seen; one starting later waits for this commit and then revokes the new session.
    SQLite ignores the clause: BEGIN IMMEDIATE already serialises writers.
    """
    sessions = typing.cast(Table, SessionRow.__table__)
    users = typing.cast(Table, UserRow.__table__)
    values = [
        users.c.id if name == "user_id" else bindparam(f"s_{name}", type_=sessions.c[name].type)
        for name in _SESSION_FIELDS
    ]
    return (
        select(*values)
        .where(
            users.c.id == bindparam("s_user_id", type_=users.c.id.type),
            users.c.session_epoch == bindparam("epoch", type_=users.c.session_epoch.type),
            users.c.disabled == false(),
            or_(
                users.c.locked_until.is_(None),
                users.c.locked_until <= bindparam("s_created_at", type_=users.c.locked_until.type),
            ),
        )
        .with_for_update(read=True)
    )


def _insert_session() -> Any:
    sessions = typing.cast(Table, SessionRow.__table__)
    return insert(sessions).from_select(list(_SESSION_FIELDS), _new_session_select())


# A first refresh token's own values in the login's statement (its session's id comes
# from the session CTE; it has no parent and is not rotated yet).
_TOKEN_CTE_COLUMNS = ("id", "digest", "generation", "created_at")


def _signed_in(with_token: bool) -> Any:
    """``WITH new_session AS (INSERT INTO sessions SELECT ... FROM users WHERE ...
    RETURNING id)[, new_token AS (INSERT INTO refresh_tokens SELECT ... FROM new_session)]
    INSERT INTO audit_events SELECT ... FROM new_session``, built once (PostgreSQL; every
    login).

    No session row (the condition of :func:`_new_session_select` failed), no token row and
    no audit row: the statement's row count says whether the login opened its session.
    PostgreSQL runs a data-modifying CTE to completion whether or not the main statement
    reads it, and one statement is atomic by itself.

    Core tables and parameters named ``s_*`` / ``t_*`` / ``a_*``: with a parameter dict an
    ORM insert would become a bulk insert, and a key named like a column would join VALUES.
    """
    sessions = typing.cast(Table, SessionRow.__table__)
    tokens = typing.cast(Table, RefreshTokenRow.__table__)
    audit = typing.cast(Table, AuditEventRow.__table__)
    new_session = _insert_session().returning(sessions.c.id).cte("new_session")
    ctes = [new_session]
    if with_token:
        new_token = (
            insert(tokens)
            .from_select(
                [*_TOKEN_CTE_COLUMNS, "session_id"],
                select(
                    *(bindparam(f"t_{n}", type_=tokens.c[n].type) for n in _TOKEN_CTE_COLUMNS),
                    new_session.c.id,
                ),
            )
            .returning(tokens.c.id)
            .cte("new_token")
        )
        ctes.append(new_token)
    return (
        insert(audit)
        .from_select(
            list(UNSEALED_COLUMNS),
            select(
                *(bindparam(f"a_{name}", type_=audit.c[name].type) for name in UNSEALED_COLUMNS)
            ).select_from(new_session),
        )
        .add_cte(*ctes)
    )


_INSERT_SESSION = _insert_session()
_INSERT_TOKEN = insert(typing.cast(Table, RefreshTokenRow.__table__))
_SIGNED_IN = _signed_in(with_token=False)
_SIGNED_IN_WITH_TOKEN = _signed_in(with_token=True)


async def write_signed_in(
    db: AsyncSession | AsyncConnection,
    session: Session,
    token: tuple[RefreshToken, str] | None,
    event: AuditRecord,
    epoch: int,
    *,
    postgresql: bool,
) -> bool:
    """Opens a session after a sign-in, with its first refresh token (and digest) if any
    and the audit row of the sign-in, under the condition of
    :meth:`SqlSessionRepository.add`. False when nothing was written.

    On PostgreSQL one statement (data-modifying CTEs, :func:`_signed_in`), atomic by itself:
    on an autocommit connection it is the whole transaction, one round trip instead of four
    (BEGIN, session, audit row, COMMIT). On SQLite, where a statement costs no round trip,
    the three plain inserts: the caller's transaction makes them one.
    """
    params = _session_params(session, epoch)
    if not postgresql:
        if not bool(affected(await db.execute(_INSERT_SESSION, params))):
            return False
        if token is not None:
            await db.execute(_INSERT_TOKEN, _token_values(*token))
        await db.execute(INSERT_UNSEALED, audit_values(event))
        return True
    params.update({f"a_{name}": value for name, value in audit_values(event).items()})
    if token is not None:
        values = _token_values(*token)
        params.update({f"t_{name}": values[name] for name in _TOKEN_CTE_COLUMNS})
    statement = _SIGNED_IN_WITH_TOKEN if token is not None else _SIGNED_IN
    return bool(affected(await db.execute(statement, params)))


def _token_values(token: RefreshToken, digest: str) -> dict[str, Any]:
    return {
        "id": token.id,
        "session_id": token.session_id,
        "digest": digest,
        "parent_id": token.parent_id,
        "generation": token.generation,
        "created_at": token.created_at,
        "rotated_at": token.rotated_at,
    }


def refresh_token_row(token: RefreshToken, digest: str) -> RefreshTokenRow:
    return RefreshTokenRow(**_token_values(token, digest))


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
        result = await self._db.execute(_INSERT_SESSION, _session_params(session, epoch))
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


def _session_params(session: Session, epoch: int) -> dict[str, Any]:
    params = {f"s_{name}": getattr(session, name) for name in _SESSION_FIELDS}
    params["s_amr"] = list(session.amr)
    params["epoch"] = epoch
    return params
