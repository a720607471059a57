"""The audit log repository: append-only rows holding ids, never personal data.

A request inserts its event unchained, in the same transaction as the change it records
(one plain INSERT, no lock: nothing is lost on a crash and no writer waits for another).
The sealer (:meth:`SqlAuditRepository.seal_pending`, run by every process's background
loop) chains the committed rows in batches: it alone sets ``seq``, ``prev_hash`` and
``hash``, and exactly one sealer runs at a time across all replicas. The hashing and the
verifier are in ``db/audit_chain.py``. See
docs/technical/2026-11-26_backend_security-implementation.md (V16).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from keyturn.db.audit_chain import (
    BATCH,
    CHECKPOINT,
    GENESIS,
    canonical_json,
    chain_hash,
    event_fields,
    unsealed_tail,
    verify_chain,
)
from keyturn.db.models import AuditEventRow
from keyturn.db.types import affected
from keyturn.domain import (
    AuditBacklog,
    AuditEvent,
    AuditFilter,
    AuditRecord,
    ChainReport,
    PruneResult,
)

# A fixed key for the PostgreSQL advisory lock only the sealer takes ("kt-audit").
SEALER_LOCK_KEY = 0x6B742D6175646974
# Transaction-level locks: released by COMMIT, ROLLBACK or a lost connection (a sealer
# that dies hands over on its own), and safe behind PgBouncer's transaction pooling.
_TRY_LOCK = select(func.pg_try_advisory_xact_lock(SEALER_LOCK_KEY))
_WAIT_LOCK = select(func.pg_advisory_xact_lock(SEALER_LOCK_KEY))
_HEAD = (
    select(AuditEventRow.seq, AuditEventRow.hash)
    .where(AuditEventRow.seq.is_not(None))
    .order_by(AuditEventRow.seq.desc())
    .limit(1)
)


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
        """Adds one unsealed event, written with the unit of work's other changes.

        Never put personal data or secrets in ``data``.
        """
        self._db.add(
            AuditEventRow(
                **audit_values(AuditRecord(event_type, now, user_id, session_id, ip, data or {}))
            )
        )

    async def record_many(self, events: Sequence[AuditRecord]) -> None:
        """Adds unsealed events in one executemany of a single-row INSERT.

        Added one by one, the ORM flushed them as one multi-row INSERT whose text depends on
        the row count: every batch size became another prepared statement in the driver's
        caches of every pooled connection (and in PostgreSQL's backends), and a worker's
        memory grew by about 5 MB per 10,000 batched grants (issue 18).
        """
        if events:
            # The table, not the ORM entity: the ORM's bulk insert leaves out the columns
            # whose values are None and adds RETURNING for a single row, two more shapes.
            await self._db.execute(INSERT_UNSEALED, [audit_values(event) for event in events])

    async def _lock(self, *, wait: bool) -> bool:
        """Takes the sealer lock until this transaction ends; False when another holds it."""
        if self._db.get_bind().dialect.name != "postgresql":
            # SQLite: BEGIN IMMEDIATE (db/engine.py) already holds the database write lock.
            return True
        if wait:
            await self._db.execute(_WAIT_LOCK)
            return True
        return bool(await self._db.scalar(_TRY_LOCK))

    async def seal_pending(self, *, limit: int, wait: bool = False) -> int | None:
        """Chains up to ``limit`` committed unsealed rows in id order onto the sealed head.

        Returns how many were sealed, or ``None`` when another sealer holds the lock (and
        ``wait`` is false). The caller commits. Under the lock, READ COMMITTED gives each
        statement a fresh snapshot, so the head read here is the last committed seal; a row
        whose transaction commits later than a higher id is simply sealed in a later batch.
        """
        if not await self._lock(wait=wait):
            return None
        head = (await self._db.execute(_HEAD)).first()
        seq, prev_hash = (head.seq, head.hash) if head is not None else (0, GENESIS)
        # Rows and one executemany UPDATE, not ORM objects: with the ORM, loading and
        # flushing each sealed row was a sixth of a client_credentials worker's CPU (its
        # grants' rows are sealed in the same process, issue 18). The hash is the same.
        rows = (await self._db.execute(_PENDING, {"limit": limit})).all()
        seals = []
        for row in rows:
            seq += 1
            sealed = chain_hash(**row._asdict(), prev_hash=prev_hash)
            seals.append(
                {"row_id": row.id, "row_seq": seq, "row_prev": prev_hash, "row_hash": sealed}
            )
            prev_hash = sealed
        if seals:
            await self._db.execute(_SEAL, seals)
        return len(rows)

    async def _seal_all(self) -> None:
        """Seals every committed row, waiting for the lock (prune's first step)."""
        while await self.seal_pending(limit=BATCH, wait=True) == BATCH:
            pass

    async def for_user(self, user_id: uuid.UUID, *, limit: int) -> list[AuditEvent]:
        return await self.search(AuditFilter(user_id=user_id), limit=limit, before_id=None)

    async def search(
        self, where: AuditFilter, *, limit: int, before_id: int | None
    ) -> list[AuditEvent]:
        """Events matching ``where`` (sealed or not), newest first, keyset-paged by id."""
        query = select(AuditEventRow).order_by(AuditEventRow.id.desc()).limit(limit)
        if where.user_id is not None:
            query = query.where(AuditEventRow.user_id == where.user_id)
        if where.type is not None:
            query = query.where(AuditEventRow.type == where.type)
        if where.since is not None:
            query = query.where(AuditEventRow.occurred_at >= where.since)
        if where.until is not None:
            query = query.where(AuditEventRow.occurred_at < where.until)
        if before_id is not None:
            query = query.where(AuditEventRow.id < before_id)
        rows = await self._db.scalars(query)
        return [AuditEvent(**event_fields(row)) for row in rows]

    async def prune(self, *, before: datetime, now: datetime) -> PruneResult:
        """Deletes the oldest sealed rows older than ``before``, anchored by a checkpoint.

        Runs under the sealer lock after sealing everything committed. Only a prefix of the
        chain (in seq order) goes, so what remains is still one unbroken chain; a row older
        than ``before`` that follows a newer one waits for the next prune. The checkpoint
        is sealed at once, so the anchor it names is itself a link of the chain.
        """
        await self._seal_all()
        sealed = AuditEventRow.seq.is_not(None)
        first_kept = await self._db.scalar(
            select(func.min(AuditEventRow.seq)).where(sealed, AuditEventRow.occurred_at >= before)
        )
        through_query = select(func.max(AuditEventRow.seq)).where(sealed)
        if first_kept is not None:
            through_query = through_query.where(AuditEventRow.seq < first_kept)
        through = await self._db.scalar(through_query)
        if through is None:
            return PruneResult(deleted=0)
        anchor = await self._db.scalar(
            select(AuditEventRow.hash).where(AuditEventRow.seq == through)
        )
        checkpoint = AuditEventRow(
            occurred_at=now.astimezone(UTC),
            type=CHECKPOINT,
            data={"pruned_through_seq": through, "anchor_hash": anchor},
        )
        self._db.add(checkpoint)
        await self._db.flush()  # the session does not autoflush: the sealer must see it
        await self._seal_all()
        result = await self._db.execute(delete(AuditEventRow).where(AuditEventRow.seq <= through))
        return PruneResult(
            deleted=affected(result), pruned_through_seq=through, checkpoint_id=checkpoint.id
        )

    async def verify(
        self, *, batch_size: int = BATCH, progress: Callable[[int], None] | None = None
    ) -> ChainReport:
        return await verify_chain(self._db, batch_size=batch_size, progress=progress)


async def audit_backlog(sessions: async_sessionmaker[AsyncSession]) -> AuditBacklog:
    """The unsealed tail for ``/metrics`` (its own short session, like the outbox backlog)."""
    async with sessions() as db:
        return await unsealed_tail(db)


_TABLE = cast(Table, AuditEventRow.__table__)
# inline(): no RETURNING of the new id for a single row either (nothing reads it back).
INSERT_UNSEALED = insert(_TABLE).inline()
# The unsealed rows, oldest first, as the fields their hash covers (event_fields).
_PENDING = (
    select(
        _TABLE.c.id,
        _TABLE.c.occurred_at,
        _TABLE.c.type,
        _TABLE.c.user_id,
        _TABLE.c.session_id,
        _TABLE.c.ip,
        _TABLE.c.data,
    )
    .where(_TABLE.c.seq.is_(None))
    .order_by(_TABLE.c.id)
    .limit(bindparam("limit"))
)
# One row's seal, run as an executemany (the bind names differ from the columns').
_SEAL = (
    update(_TABLE)
    .where(_TABLE.c.id == bindparam("row_id"))
    .values(seq=bindparam("row_seq"), prev_hash=bindparam("row_prev"), hash=bindparam("row_hash"))
)


# The columns of an unsealed row, the keys of ``audit_values``.
UNSEALED_COLUMNS = ("occurred_at", "type", "user_id", "session_id", "ip", "data")


def audit_values(event: AuditRecord) -> dict[str, Any]:
    """The column values (``UNSEALED_COLUMNS``) of an unsealed row for ``event`` (also
    written by a session's opening statement, ``db/session_opening.py``)."""
    if event.now.tzinfo is None:
        raise ValueError("naive datetime given to the audit log")
    values = (
        event.now.astimezone(UTC),
        event.event_type,
        event.user_id,
        event.session_id,
        event.ip,
        # Stored as it will read back (a JSON round trip): the sealer hashes that.
        json.loads(canonical_json(event.data)),
    )
    return dict(zip(UNSEALED_COLUMNS, values, strict=True))
