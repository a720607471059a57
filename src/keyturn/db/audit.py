"""The audit log repository: append-only rows holding ids, never personal data."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from keyturn.db.models import AuditEventRow
from keyturn.domain import AuditEvent


class SqlAuditRepository:
    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    async def record(
        self,
        event_type: str,
        *,
        now: datetime,
        user_id: uuid.UUID | None = None,
        session_id: uuid.UUID | None = None,
        ip: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        self._db.add(
            AuditEventRow(
                occurred_at=now,
                type=event_type,
                user_id=user_id,
                session_id=session_id,
                ip=ip,
                data=data or {},
            )
        )
        await self._db.flush()

    async def for_user(self, user_id: uuid.UUID, *, limit: int) -> list[AuditEvent]:
        rows = await self._db.scalars(
            select(AuditEventRow)
            .where(AuditEventRow.user_id == user_id)
            .order_by(AuditEventRow.id.desc())
            .limit(limit)
        )
        return [
            AuditEvent(
                id=row.id,
                occurred_at=row.occurred_at,
                type=row.type,
                user_id=row.user_id,
                session_id=row.session_id,
                ip=row.ip,
                data=dict(row.data),
            )
            for row in rows
        ]
