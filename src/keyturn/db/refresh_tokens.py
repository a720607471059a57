"""Refresh tokens: digests only; rotation claimed by compare-and-set (one successor).

The rotation's hot path is two statements (DESIGN.md section 4, issue 7): one read of the
token with its session and user (:meth:`SqlRefreshTokenRepository.find_with_session`),
then one write that claims the token, inserts its successor and touches the session
(:meth:`SqlRefreshTokenRepository.rotate`; one statement on PostgreSQL, three on SQLite,
where a statement is no network round trip).
"""

from __future__ import annotations

import typing
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from keyturn.db.models import (
    RefreshTokenRow,
    RoleRow,
    SessionRow,
    UserRoleRow,
    UserRow,
)
from keyturn.db.session_opening import refresh_token_row
from keyturn.db.sessions import session_from_row
from keyturn.db.types import affected
from keyturn.db.users import user_from_row
from keyturn.domain import (
    RefreshToken,
    Session,
    User,
)

# Built once (every refresh): the token, its session and its user with the roles (and
# their permissions, which an OAuth grant is narrowed to) joined in, one row per role.
# Only the digests change.
_TOKEN_WITH_SESSION = (
    select(RefreshTokenRow, SessionRow, UserRow, RoleRow.name, RoleRow.permissions)
    .join(SessionRow, SessionRow.id == RefreshTokenRow.session_id)
    .join(UserRow, UserRow.id == SessionRow.user_id)
    .outerjoin(UserRoleRow, UserRoleRow.user_id == UserRow.id)
    .outerjoin(RoleRow, RoleRow.id == UserRoleRow.role_id)
    .where(RefreshTokenRow.digest.in_(bindparam("digests", expanding=True)))
    .order_by(RoleRow.name)
    .execution_options(populate_existing=True)
)


def _rotate_statement() -> Any:
    """The PostgreSQL rotation of :meth:`SqlRefreshTokenRepository.rotate`, built once.

    The claim's WHERE is the lock, as in ``mark_rotated``; the claim selects from the
    session touch (live sessions only) and the successor's INSERT from the claim, so they
    happen only for the caller that won it while the session was live. Core tables, not
    the mapped classes: executed with a parameter dict, an ORM INSERT would become a bulk
    INSERT ... VALUES. No parameter is named like a column:
    Core would add such a key to the UPDATE's SET clause.
    """
    tokens = typing.cast(Table, RefreshTokenRow.__table__)
    sessions = typing.cast(Table, SessionRow.__table__)
    # The session first, and only while it is not revoked (issue 12 finding 20): the
    # UPDATE waits for a concurrent revocation's row lock and then sees it, so a
    # refresh racing a password change or a logout everywhere mints nothing; the claim
    # selects from it.
    touched = (
        update(sessions)
        .where(
            sessions.c.id == bindparam("live_session", type_=sessions.c.id.type),
            sessions.c.revoked_at.is_(None),
        )
        .values(last_seen_at=bindparam("now", type_=sessions.c.last_seen_at.type))
        .returning(sessions.c.id)
        .cte("touched")
    )
    claimed = (
        update(tokens)
        .where(
            tokens.c.id == bindparam("token_id", type_=tokens.c.id.type),
            tokens.c.rotated_at.is_(None),
            tokens.c.session_id.in_(select(touched.c.id)),
        )
        .values(rotated_at=bindparam("now", type_=tokens.c.rotated_at.type))
        .returning(tokens.c.id, tokens.c.session_id)
        .cte("claimed")
    )
    return (
        insert(tokens)
        .from_select(
            ["id", "session_id", "digest", "parent_id", "generation", "created_at"],
            select(
                bindparam("successor_id", type_=tokens.c.id.type),
                claimed.c.session_id,
                bindparam("new_digest", type_=tokens.c.digest.type),
                claimed.c.id,
                bindparam("new_generation", type_=tokens.c.generation.type),
                bindparam("new_created_at", type_=tokens.c.created_at.type),
            ),
        )
        .returning(tokens.c.id)
    )


_ROTATE = _rotate_statement()


def _refresh(row: RefreshTokenRow) -> RefreshToken:
    return RefreshToken(
        id=row.id,
        session_id=row.session_id,
        parent_id=row.parent_id,
        generation=row.generation,
        created_at=row.created_at,
        rotated_at=row.rotated_at,
    )


class SqlRefreshTokenRepository:
    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    async def add(self, token: RefreshToken, digest: str) -> None:
        self._db.add(refresh_token_row(token, digest))
        await self._db.flush()

    async def find_with_session(
        self, digests: Sequence[str]
    ) -> tuple[RefreshToken, Session, User, frozenset[str]] | None:
        """The token with one of ``digests``, its session, its user and the user's
        current permissions: one statement."""
        rows = (await self._db.execute(_TOKEN_WITH_SESSION, {"digests": list(digests)})).all()
        if not rows:
            return None
        token, session, user, _, _ = rows[0]
        # A digest is unique, so every row is the same token; the roles vary.
        roles = tuple(name for *_, name, _ in rows if name is not None)
        held = frozenset(p for *_, permissions in rows for p in permissions or ())
        return _refresh(token), session_from_row(session), user_from_row(user, roles), held

    async def rotate(
        self, token: RefreshToken, successor: RefreshToken, digest: str, now: datetime
    ) -> bool:
        """Claims ``token`` (compare-and-set on ``rotated_at``), inserts ``successor`` and
        touches the session, atomically. True for exactly one caller; nothing written for
        the others.
        """
        if self._db.get_bind().dialect.name != "postgresql":
            # SQLite: the write lock is held from BEGIN IMMEDIATE (before the caller read the
            # session live) and a statement costs no round trip, so the plain steps are as
            # atomic and as cheap, and no revocation can commit in between.
            if not await self.mark_rotated(token.id, now):
                return False
            await self.add(successor, digest)
            await self._db.execute(
                update(SessionRow).where(SessionRow.id == token.session_id).values(last_seen_at=now)
            )
            return True
        # PostgreSQL: one statement with data-modifying CTEs (one round trip instead of
        # three; see _rotate_statement).
        params = {
            "live_session": token.session_id,
            "token_id": token.id,
            "now": now,
            "successor_id": successor.id,
            "new_digest": digest,
            "new_generation": successor.generation,
            "new_created_at": successor.created_at,
        }
        return (await self._db.execute(_ROTATE, params)).first() is not None

    async def find(self, digests: Sequence[str]) -> RefreshToken | None:
        row = await self._db.scalar(
            select(RefreshTokenRow).where(RefreshTokenRow.digest.in_(list(digests))).limit(1)
        )
        return _refresh(row) if row else None

    async def get(self, token_id: uuid.UUID) -> RefreshToken | None:
        # populate_existing: after losing a rotation race the row must be read again.
        row = await self._db.get(RefreshTokenRow, token_id, populate_existing=True)
        return _refresh(row) if row else None

    async def mark_rotated(self, token_id: uuid.UUID, now: datetime) -> bool:
        # The WHERE clause is the lock: of N concurrent callers exactly one matches a row.
        result = await self._db.execute(
            update(RefreshTokenRow)
            .where(RefreshTokenRow.id == token_id, RefreshTokenRow.rotated_at.is_(None))
            .values(rotated_at=now)
        )
        return bool(affected(result))

    async def successor(self, token_id: uuid.UUID) -> tuple[RefreshToken, str] | None:
        row = await self._db.scalar(
            select(RefreshTokenRow)
            .where(RefreshTokenRow.parent_id == token_id)
            .execution_options(populate_existing=True)
        )
        return (_refresh(row), row.digest) if row else None
