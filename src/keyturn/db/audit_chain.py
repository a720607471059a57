"""The audit chain: the canonical encoding each row's hash covers, and the verifier.

A sealed row's ``hash`` is SHA-256 over a versioned JSON array of its fields and the
previous sealed row's hash; ``seq`` is its place in the chain. The verifier walks the sealed
rows in ``seq`` order and names the first edited, deleted, inserted or reordered row, then
reports the unsealed tail it cannot vouch for yet. See
docs/technical/2026-11-26_backend_security-implementation.md (V16).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from keyturn.db.models import AuditEventRow
from keyturn.domain import AuditBacklog, ChainReport

GENESIS = "0" * 64
CHECKPOINT = "audit.checkpoint"
ENCODING_VERSION = "keyturn-audit-v1"
BATCH = 1000


def rfc3339(value: datetime) -> str:
    if value.tzinfo is None:
        # UTCDateTime hands back aware values; a naive one here is a programming error.
        raise ValueError("naive datetime in an audit row")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def canonical_encoding(
    *,
    id: int,
    occurred_at: datetime,
    type: str,
    user_id: uuid.UUID | None,
    session_id: uuid.UUID | None,
    ip: str | None,
    data: Mapping[str, Any],
    prev_hash: str,
) -> bytes:
    """The exact bytes a row's hash covers (a versioned JSON array, one slot per field)."""
    fields = [
        ENCODING_VERSION,
        id,
        rfc3339(occurred_at),
        type,
        str(user_id) if user_id is not None else None,
        str(session_id) if session_id is not None else None,
        ip,
        dict(data),
        prev_hash,
    ]
    return canonical_json(fields).encode("utf-8")


def chain_hash(**fields: Any) -> str:
    """Hex SHA-256 of :func:`canonical_encoding` (the fields as keyword arguments)."""
    return hashlib.sha256(canonical_encoding(**fields)).hexdigest()


def event_fields(row: AuditEventRow) -> dict[str, Any]:
    """A row's event fields (everything but the chain's hashes)."""
    return {
        "id": row.id,
        "occurred_at": row.occurred_at,
        "type": row.type,
        "user_id": row.user_id,
        "session_id": row.session_id,
        "ip": row.ip,
        "data": dict(row.data),
    }


def row_hash(row: AuditEventRow) -> str:
    if row.prev_hash is None:
        raise ValueError("an unsealed audit row has no hash")
    return chain_hash(**event_fields(row), prev_hash=row.prev_hash)


async def _anchors(db: AsyncSession) -> dict[str, int]:
    """anchor_hash -> pruned-through seq of every sealed checkpoint row.

    Checkpoints written before the sealer (migration 0016) name ``pruned_through_id``; those
    rows were chained in id order, so their seq is their id.
    """
    found: dict[str, int] = {}
    for data in await db.scalars(
        select(AuditEventRow.data).where(
            AuditEventRow.type == CHECKPOINT, AuditEventRow.seq.is_not(None)
        )
    ):
        anchor = data.get("anchor_hash")
        through = data.get("pruned_through_seq", data.get("pruned_through_id"))
        if isinstance(anchor, str) and isinstance(through, int):
            found[anchor] = through
    return found


async def unsealed_tail(db: AsyncSession) -> AuditBacklog:
    """How many rows wait for the sealer and when the oldest of them happened."""
    count, oldest = (
        await db.execute(
            select(func.count(), func.min(AuditEventRow.occurred_at)).where(
                AuditEventRow.seq.is_(None)
            )
        )
    ).one()
    return AuditBacklog(unsealed=int(count), oldest_at=oldest)


async def verify_chain(
    db: AsyncSession, *, batch_size: int = BATCH, progress: Callable[[int], None] | None = None
) -> ChainReport:
    """Walks the sealed chain in seq order, ``batch_size`` rows at a time (streaming);
    ``progress(n)`` hears of each batch checked (``keyturn audit verify``'s bar).

    The checkpoints consulted for the oldest row are themselves sealed rows of the walked
    chain, so a forged or edited checkpoint is caught as an edited or inserted row. The
    report ends with the unsealed tail (rows the sealer has not reached; the walk cannot
    vouch for them yet).
    """
    anchors = await _anchors(db)
    count = 0
    previous: tuple[int, int, str] | None = None  # seq, id, hash
    while True:
        query = (
            select(AuditEventRow)
            .where(AuditEventRow.seq.is_not(None))
            .order_by(AuditEventRow.seq)
            .limit(batch_size)
        )
        if previous is not None:
            query = query.where(AuditEventRow.seq > previous[0])
        rows = list(await db.scalars(query))
        for row in rows:
            db.expunge(row)  # streaming: the identity map must not keep every row
            problem = _check(row, previous, anchors)
            if problem is None and row.seq is not None and row.hash is not None:
                previous = (row.seq, row.id, row.hash)
                count += 1
                continue
            tail = await unsealed_tail(db)
            return ChainReport(
                rows=count,
                bad_id=row.id,
                reason=problem,
                unsealed=tail.unsealed,
                oldest_unsealed_at=tail.oldest_at,
            )
        if progress is not None:
            progress(len(rows))
        if len(rows) < batch_size:
            break
    tail = await unsealed_tail(db)
    return ChainReport(
        rows=count,
        head_id=previous[1] if previous is not None else None,
        head_hash=previous[2] if previous is not None else None,
        unsealed=tail.unsealed,
        oldest_unsealed_at=tail.oldest_at,
    )


def _check(
    row: AuditEventRow, previous: tuple[int, int, str] | None, anchors: dict[str, int]
) -> str | None:
    seq = row.seq
    if seq is None or row.hash is None or row.prev_hash is None or row_hash(row) != row.hash:
        return "hash mismatch: the row was edited"
    if previous is None:
        if row.prev_hash == GENESIS:
            return None
        through = anchors.get(row.prev_hash)
        if through is not None and through < seq:
            return None
        return (
            "prev_hash matches neither the genesis nor a checkpoint anchor: "
            "older rows were deleted without a checkpoint"
        )
    if row.prev_hash != previous[2]:
        if seq != previous[0] + 1:
            return (
                f"prev_hash does not match row {previous[1]}: the rows sealed at "
                f"{previous[0] + 1}..{seq - 1} are missing (deleted)"
            )
        return (
            f"prev_hash does not match row {previous[1]}: "
            "a row was deleted, inserted or moved in the chain"
        )
    return None
