"""The email outbox table: due messages, sending leases, delivery outcome."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from keyturn.db.models import OutboxMessageRow
from keyturn.db.types import affected
from keyturn.domain import OutboxEntry
from keyturn.security.aead import Aead, DecryptionError


def _outbox(row: OutboxMessageRow) -> OutboxEntry:
    return OutboxEntry(
        id=row.id,
        message_id=row.message_id,
        kind=row.kind,
        payload=row.payload,
        attempts=row.attempts,
        created_at=row.created_at,
    )


class SqlOutboxRepository:
    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    async def add(self, *, message_id: str, kind: str, payload: bytes, now: datetime) -> uuid.UUID:
        entry_id = uuid.uuid4()
        self._db.add(
            OutboxMessageRow(
                id=entry_id,
                message_id=message_id,
                kind=kind,
                payload=payload,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
        await self._db.flush()
        return entry_id

    @staticmethod
    def _claimable(now: datetime) -> Any:
        return or_(
            and_(OutboxMessageRow.status == "pending", OutboxMessageRow.next_attempt_at <= now),
            # A worker that crashed mid-send leaves its lease behind; it expires.
            and_(OutboxMessageRow.status == "sending", OutboxMessageRow.lease_until < now),
        )

    async def due(self, now: datetime, *, limit: int) -> list[uuid.UUID]:
        rows = await self._db.scalars(
            select(OutboxMessageRow.id)
            .where(self._claimable(now))
            .order_by(OutboxMessageRow.next_attempt_at)
            .limit(limit)
        )
        return list(rows)

    async def claim(
        self, entry_id: uuid.UUID, *, owner: str, now: datetime, lease_until: datetime
    ) -> OutboxEntry | None:
        # Compare-and-set on the same condition that made it due: one worker wins.
        result = await self._db.execute(
            update(OutboxMessageRow)
            .where(OutboxMessageRow.id == entry_id, self._claimable(now))
            .values(
                status="sending",
                lease_owner=owner,
                lease_until=lease_until,
                attempts=OutboxMessageRow.attempts + 1,
            )
        )
        if not affected(result):
            return None
        row = await self._db.get(OutboxMessageRow, entry_id, populate_existing=True)
        return _outbox(row) if row else None

    async def mark_sent(self, entry_id: uuid.UUID, *, owner: str, now: datetime) -> bool:
        result = await self._db.execute(
            update(OutboxMessageRow)
            .where(OutboxMessageRow.id == entry_id, OutboxMessageRow.lease_owner == owner)
            # The sealed body is dropped once delivered: no personal data outlives its use.
            .values(
                status="sent",
                sent_at=now,
                payload=b"",
                lease_owner=None,
                lease_until=None,
                last_error=None,
            )
        )
        return bool(affected(result))

    async def mark_failed(
        self, entry_id: uuid.UUID, *, owner: str, error: str, retry_at: datetime | None
    ) -> bool:
        values: dict[str, Any] = {
            "lease_owner": None,
            "lease_until": None,
            "last_error": error[:500],
            "status": "pending" if retry_at else "dead",
        }
        if retry_at is not None:
            values["next_attempt_at"] = retry_at
        result = await self._db.execute(
            update(OutboxMessageRow)
            .where(OutboxMessageRow.id == entry_id, OutboxMessageRow.lease_owner == owner)
            .values(**values)
        )
        return bool(affected(result))

    async def counts(self) -> dict[str, int]:
        rows = await self._db.execute(
            select(OutboxMessageRow.status, func.count()).group_by(OutboxMessageRow.status)
        )
        return {status: int(count) for status, count in rows.all()}

    async def list_by_status(self, status: str, *, limit: int) -> list[OutboxEntry]:
        rows = await self._db.scalars(
            select(OutboxMessageRow)
            .where(OutboxMessageRow.status == status)
            .order_by(OutboxMessageRow.created_at)
            .limit(limit)
        )
        return [_outbox(row) for row in rows]


RESEAL_BATCH = 200


async def reseal_payloads(
    sessions: async_sessionmaker[AsyncSession],
    aead: Aead,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, int, int]:
    """Re-encrypts queued mail (pending, sending, dead: every non-empty payload) in
    batches; returns (re-encrypted, already current, unreadable and not dead).
    ``progress(n)`` hears of each batch done (``keyturn secret rotate``'s bar).

    Each UPDATE is a compare-and-set on the old blob, so a message a worker delivers (and
    empties) meanwhile is left alone. The AAD is the Message-ID, as in MailOutbox.enqueue.
    """
    done = current = failed = 0
    after: uuid.UUID | None = None
    while True:
        async with sessions() as db:
            query = (
                select(
                    OutboxMessageRow.id,
                    OutboxMessageRow.message_id,
                    OutboxMessageRow.payload,
                    OutboxMessageRow.status,
                )
                .where(func.length(OutboxMessageRow.payload) > 0)
                .order_by(OutboxMessageRow.id)
                .limit(RESEAL_BATCH)
            )
            if after is not None:
                query = query.where(OutboxMessageRow.id > after)
            rows = (await db.execute(query)).all()
            for entry_id, message_id, payload, status in rows:
                aad = message_id.encode()
                try:
                    if not aead.needs_reencrypt(payload):
                        current += 1
                        continue
                    sealed = aead.encrypt(aead.decrypt(payload, aad=aad), aad=aad)
                except DecryptionError:
                    # A dead letter nobody can open any more is past saving; queued mail
                    # that the ring cannot open means the old key is still needed.
                    failed += status != "dead"
                    continue
                result = await db.execute(
                    update(OutboxMessageRow)
                    .where(OutboxMessageRow.id == entry_id, OutboxMessageRow.payload == payload)
                    .values(payload=sealed)
                )
                done += affected(result)
            await db.commit()
        if progress is not None:
            progress(len(rows))
        if len(rows) < RESEAL_BATCH:
            return done, current, failed
        after = rows[-1][0]


async def outbox_backlog(
    sessions: async_sessionmaker[AsyncSession],
) -> tuple[dict[str, int], datetime | None]:
    """Mails not yet delivered per status, and when the oldest waiting one was queued.

    One grouped query over the (status, next_attempt_at) index for ``/metrics``; sent
    mail is left out (it only grows).
    """
    async with sessions() as db:
        rows = await db.execute(
            select(OutboxMessageRow.status, func.count(), func.min(OutboxMessageRow.created_at))
            .where(OutboxMessageRow.status.in_(("pending", "sending", "dead")))
            .group_by(OutboxMessageRow.status)
        )
    counts: dict[str, int] = {}
    oldest: datetime | None = None
    for status, count, first in rows.all():
        counts[status] = int(count)
        if status != "dead" and first is not None:
            oldest = first if oldest is None else min(oldest, first)
    return counts, oldest
