"""Refresh tokens: digests only; rotation claimed by compare-and-set (one successor)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from keyturn.db.models import (
    RefreshTokenRow,
)
from keyturn.db.types import affected
from keyturn.domain import (
    RefreshToken,
)


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
        self._db.add(
            RefreshTokenRow(
                id=token.id,
                session_id=token.session_id,
                digest=digest,
                parent_id=token.parent_id,
                generation=token.generation,
                created_at=token.created_at,
                rotated_at=token.rotated_at,
            )
        )
        await self._db.flush()

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
