"""Personal API keys: one row per key, found by its public prefix."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import cast

from sqlalchemy import Table, Uuid, bindparam, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from keyturn.db.models import ApiKeyRow
from keyturn.db.types import UTCDateTime, affected
from keyturn.domain import ApiKey


def _api_key(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        id=row.id,
        user_id=row.user_id,
        name=row.name,
        prefix=row.prefix,
        scopes=tuple(row.scopes),
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


class SqlApiKeyRepository:
    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    async def add(self, key: ApiKey, digest: str) -> bool:
        # A savepoint: the unique prefix decides a (rare) collision; the caller draws again.
        try:
            async with self._db.begin_nested():
                self._db.add(
                    ApiKeyRow(
                        id=key.id,
                        user_id=key.user_id,
                        name=key.name,
                        prefix=key.prefix,
                        digest=digest,
                        scopes=list(key.scopes),
                        created_at=key.created_at,
                        expires_at=key.expires_at,
                    )
                )
        except IntegrityError:
            return False
        return True

    async def find_by_prefix(self, prefix: str) -> tuple[ApiKey, str] | None:
        row = await self._db.scalar(
            select(ApiKeyRow)
            .where(ApiKeyRow.prefix == prefix)
            .execution_options(populate_existing=True)
        )
        return (_api_key(row), row.digest) if row else None

    async def list_for(self, user_id: uuid.UUID) -> list[ApiKey]:
        rows = await self._db.scalars(
            select(ApiKeyRow)
            .where(ApiKeyRow.user_id == user_id, ApiKeyRow.revoked_at.is_(None))
            .order_by(ApiKeyRow.created_at.desc(), ApiKeyRow.id)
        )
        return [_api_key(row) for row in rows]

    async def revoke(self, key_id: uuid.UUID, user_id: uuid.UUID, now: datetime) -> bool:
        # The owner is part of the WHERE clause: someone else's key id matches nothing.
        result = await self._db.execute(
            update(ApiKeyRow)
            .where(
                ApiKeyRow.id == key_id,
                ApiKeyRow.user_id == user_id,
                ApiKeyRow.revoked_at.is_(None),
            )
            .values(revoked_at=now)
        )
        return bool(affected(result))

    async def revoke_all(self, user_id: uuid.UUID, now: datetime) -> list[uuid.UUID]:
        # One UPDATE ... RETURNING: the ids audited are exactly the rows this statement
        # revoked, with no window between reading and writing them.
        revoked = await self._db.scalars(
            update(ApiKeyRow)
            .where(ApiKeyRow.user_id == user_id, ApiKeyRow.revoked_at.is_(None))
            .values(revoked_at=now)
            .returning(ApiKeyRow.id)
            .execution_options(synchronize_session=False)
        )
        return list(revoked)

    async def mark_used(self, used: Mapping[uuid.UUID, datetime]) -> None:
        if not used:
            return
        # One executemany for the whole batch (Core, not the ORM's per-row bulk update);
        # a later time never goes back in time.
        api_keys = cast(Table, ApiKeyRow.__table__)  # a declarative model's table is a Table
        table = api_keys.c
        used_at = bindparam("used_at", type_=UTCDateTime())
        statement = (
            update(api_keys)
            .where(
                table.id == bindparam("key_id", type_=Uuid()),
                or_(table.last_used_at.is_(None), table.last_used_at < used_at),
            )
            .values(last_used_at=used_at)
        )
        await self._db.execute(
            statement, [{"key_id": key_id, "used_at": when} for key_id, when in used.items()]
        )
