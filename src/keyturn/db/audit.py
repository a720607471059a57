"""The audit log repository: append-only, hash-chained rows holding ids, never personal data.

Appends are serialized by the chain lock and written at the unit of work's commit; the
hashing and the verifier are in ``db/audit_chain.py``.
See docs/technical/2026-11-26_backend_security-implementation.md (V16).
"""

from __future__ import annotations

import json
import typing
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import String, Table, bindparam, cast, delete, func, insert, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from keyturn.db.audit_chain import (
    BATCH,
    CHECKPOINT,
    ENCODING_VERSION,
    GENESIS,
    canonical_json,
    event_fields,
    rfc3339,
    row_hash,
    verify_chain,
)
from keyturn.db.models import AuditEventRow
from keyturn.db.types import affected
from keyturn.domain import AuditEvent, AuditFilter, ChainReport, PruneResult

# A fixed key for pg_advisory_xact_lock: only the audit chain uses it ("kt-audit").
CHAIN_LOCK_KEY = 0x6B742D6175646974


def _append_one_statement() -> Any:
    """The INSERT ... SELECT of :meth:`SqlAuditRepository._append_one_in_sql`, built once.

    The head's id and hash are read by two scalar subqueries of the same statement (one
    snapshot); an empty table chains onto the genesis. The hashed text is the canonical
    encoding: ``["keyturn-audit-v1",`` id ``,`` the middle fields ``,"`` prev_hash ``"]``.
    """
    # The Table, not the mapped class: executed with a parameter dict, an ORM insert
    # would turn into a bulk INSERT ... VALUES.
    table = typing.cast(Table, AuditEventRow.__table__)
    columns = table.c
    newest = select(AuditEventRow.id).order_by(AuditEventRow.id.desc()).limit(1)
    newest_hash = select(AuditEventRow.hash).order_by(AuditEventRow.id.desc()).limit(1)
    new_id = func.coalesce(newest.scalar_subquery(), 0) + 1
    prev_hash = func.coalesce(newest_hash.scalar_subquery(), GENESIS)
    text = (
        literal(canonical_json([ENCODING_VERSION])[:-1] + ",")
        + cast(new_id, String)
        + bindparam("middle", type_=String)
        + prev_hash
        + literal('"]')
    )
    digest = func.encode(func.sha256(func.convert_to(text, "UTF8")), "hex")
    names = ["occurred_at", "type", "user_id", "session_id", "ip", "data"]
    return (
        insert(table)
        .from_select(
            ["id", *names, "prev_hash", "hash"],
            select(
                new_id,
                # "event_" names: a parameter named like a column would join the VALUES.
                *(bindparam(f"event_{name}", type_=columns[name].type) for name in names),
                prev_hash,
                digest,
            ),
        )
        .returning(columns.id, columns.prev_hash, columns.hash)
    )


_APPEND_ONE = _append_one_statement()
# Built once: every audited write takes it.
_LOCK_CHAIN = select(func.pg_advisory_xact_lock(CHAIN_LOCK_KEY))


@dataclass(frozen=True, slots=True)
class _Staged:
    type: str
    now: datetime
    user_id: uuid.UUID | None
    session_id: uuid.UUID | None
    ip: str | None
    data: dict[str, Any] | None


class SqlAuditRepository:
    """``defer=True`` (the unit of work's): ``record`` stages, ``seal`` appends."""

    def __init__(self, db: AsyncSession, *, defer: bool = False) -> None:
        self._db = db
        self._defer = defer
        self._staged: list[_Staged] = []

    async def _lock_chain(self) -> None:
        """Serializes appends until this transaction ends."""
        bind = self._db.get_bind()
        if bind.dialect.name == "postgresql":
            # Released at commit/rollback; READ COMMITTED gives the next statement a fresh
            # snapshot, so the last row read below is the committed head.
            await self._db.execute(_LOCK_CHAIN)
        # SQLite: BEGIN IMMEDIATE (db/engine.py) already holds the database write lock.

    async def _head(self) -> tuple[int, str] | None:
        last = (
            await self._db.execute(
                select(AuditEventRow.id, AuditEventRow.hash)
                .order_by(AuditEventRow.id.desc())
                .limit(1)
            )
        ).first()
        return (last.id, last.hash) if last is not None else None

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
        """Appends one event to the chain (never put personal data or secrets in ``data``).

        Deferred (inside a unit of work): the row is written by :meth:`seal` at commit.
        """
        if now.tzinfo is None:
            raise ValueError("naive datetime given to the audit log")
        event = _Staged(event_type, now, user_id, session_id, ip, data)
        if self._defer:
            self._staged.append(event)
            return
        await self._append_all([event])

    async def seal(self) -> None:
        """Writes the staged events under the chain lock; call it right before COMMIT."""
        if not self._staged:
            return
        staged, self._staged = self._staged, []
        # The use case's own writes go out before the lock is taken, not while it is held.
        await self._db.flush()
        await self._append_all(staged)

    def discard(self) -> None:
        """Forgets staged events (the transaction is rolled back)."""
        self._staged.clear()

    async def _append(
        self,
        event_type: str,
        *,
        now: datetime,
        data: dict[str, Any] | None = None,
    ) -> AuditEventRow:
        return (await self._append_all([_Staged(event_type, now, None, None, None, data)]))[0]

    async def _append_all(self, events: list[_Staged]) -> list[AuditEventRow]:
        """Lock, one head read, the rows chained in order, one flush."""
        await self._lock_chain()
        if len(events) == 1 and self._db.get_bind().dialect.name == "postgresql":
            # The common case (one event per use case): head read and insert in one
            # statement, so the lock is held for that statement and the COMMIT only.
            return [await self._append_one_in_sql(events[0])]
        head = await self._head()
        row_id, prev_hash = (head[0] + 1, head[1]) if head is not None else (1, GENESIS)
        rows: list[AuditEventRow] = []
        for event in events:
            # Stored as it will read back (JSON round trip), so the hash covers what is kept.
            stored = json.loads(canonical_json(event.data or {}))
            row = AuditEventRow(
                id=row_id,
                occurred_at=event.now.astimezone(UTC),
                type=event.type,
                user_id=event.user_id,
                session_id=event.session_id,
                ip=event.ip,
                data=stored,
                prev_hash=prev_hash,
            )
            row.hash = row_hash(row)
            self._db.add(row)
            rows.append(row)
            row_id, prev_hash = row_id + 1, row.hash
        await self._db.flush()
        return rows

    async def _append_one_in_sql(self, event: _Staged) -> AuditEventRow:
        """One row chained onto the head inside one INSERT ... SELECT (PostgreSQL).

        Called with the chain lock held, so the statement's snapshot (taken after the lock
        statement, READ COMMITTED) sees the committed head. The row's id and ``prev_hash``
        come from the head and its hash is SHA-256 over :func:`canonical_encoding`, built
        in SQL from the same JSON text Python would hash: everything but the id and
        ``prev_hash`` is encoded here, those two are spliced in by the database. The
        answer is checked against Python's own hash before the caller can commit, so the
        two encodings can never drift apart silently.
        """
        stored = json.loads(canonical_json(event.data or {}))
        occurred = event.now.astimezone(UTC)
        user_id = str(event.user_id) if event.user_id is not None else None
        session_id = str(event.session_id) if event.session_id is not None else None
        # canonical_encoding is [version, id, occurred, type, user, session, ip, data, prev]
        # as compact JSON: split around the two values only the database knows.
        middle = canonical_json(
            [rfc3339(occurred), event.type, user_id, session_id, event.ip, stored]
        )[1:-1]
        inserted = (
            await self._db.execute(
                _APPEND_ONE,
                {
                    "event_occurred_at": occurred,
                    "event_type": event.type,
                    "event_user_id": event.user_id,
                    "event_session_id": event.session_id,
                    "event_ip": event.ip,
                    "event_data": stored,
                    "middle": "," + middle + ',"',
                },
            )
        ).one()
        row = AuditEventRow(
            id=inserted.id,
            occurred_at=occurred,
            type=event.type,
            user_id=event.user_id,
            session_id=event.session_id,
            ip=event.ip,
            data=stored,
            prev_hash=inserted.prev_hash,
            hash=inserted.hash,
        )
        if row_hash(row) != inserted.hash:
            # Never commit a row the verifier would reject (raising rolls the work back).
            raise RuntimeError("audit row hashed differently in SQL and Python")
        return row

    async def for_user(self, user_id: uuid.UUID, *, limit: int) -> list[AuditEvent]:
        return await self.search(AuditFilter(user_id=user_id), limit=limit, before_id=None)

    async def search(
        self, where: AuditFilter, *, limit: int, before_id: int | None
    ) -> list[AuditEvent]:
        """Events matching ``where``, newest first, keyset-paged by id."""
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
        """Deletes the oldest rows older than ``before``, anchored by a checkpoint row.

        Only a prefix (in id order) goes, so what remains is still one unbroken chain; a
        row older than ``before`` that follows a newer one waits for the next prune.
        """
        await self.seal()
        await self._lock_chain()
        first_kept = await self._db.scalar(
            select(func.min(AuditEventRow.id)).where(AuditEventRow.occurred_at >= before)
        )
        through_query = select(func.max(AuditEventRow.id))
        if first_kept is not None:
            through_query = through_query.where(AuditEventRow.id < first_kept)
        through = await self._db.scalar(through_query)
        if through is None:
            return PruneResult(deleted=0)
        anchor = await self._db.scalar(
            select(AuditEventRow.hash).where(AuditEventRow.id == through)
        )
        assert anchor is not None  # noqa: S101  (read under the chain lock just above)
        checkpoint = await self._append(
            CHECKPOINT, now=now, data={"pruned_through_id": through, "anchor_hash": anchor}
        )
        result = await self._db.execute(delete(AuditEventRow).where(AuditEventRow.id <= through))
        return PruneResult(
            deleted=affected(result),
            pruned_through_id=through,
            checkpoint_id=checkpoint.id,
        )

    async def verify(
        self, *, batch_size: int = BATCH, progress: Callable[[int], None] | None = None
    ) -> ChainReport:
        return await verify_chain(self._db, batch_size=batch_size, progress=progress)
