"""The audit chain: the canonical encoding each row's hash covers, and the verifier.

A row's ``hash`` is SHA-256 over a versioned JSON array of its fields and the previous
row's hash; the verifier names the first edited, deleted or inserted row. See
docs/technical/2026-11-26_backend_security-implementation.md (V16).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from keyturn.db.models import AuditEventRow
from keyturn.domain import ChainReport

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
    return chain_hash(**event_fields(row), prev_hash=row.prev_hash)


async def _anchors(db: AsyncSession) -> dict[str, int]:
    """anchor_hash -> pruned_through_id of every checkpoint row still in the table."""
    found: dict[str, int] = {}
    for data in await db.scalars(
        select(AuditEventRow.data).where(AuditEventRow.type == CHECKPOINT)
    ):
        anchor, through = data.get("anchor_hash"), data.get("pruned_through_id")
        if isinstance(anchor, str) and isinstance(through, int):
            found[anchor] = through
    return found


async def verify_chain(
    db: AsyncSession, *, batch_size: int = BATCH, progress: Callable[[int], None] | None = None
) -> ChainReport:
    """Walks the whole chain in id order, ``batch_size`` rows at a time (streaming);
    ``progress(n)`` hears of each batch checked (``keyturn audit verify``'s bar).

    The checkpoints consulted for the oldest row are themselves rows of the walked chain,
    so a forged or edited checkpoint is caught as an edited or inserted row.
    """
    anchors = await _anchors(db)
    count = 0
    previous: tuple[int, str] | None = None
    while True:
        query = select(AuditEventRow).order_by(AuditEventRow.id).limit(batch_size)
        if previous is not None:
            query = query.where(AuditEventRow.id > previous[0])
        rows = list(await db.scalars(query))
        for row in rows:
            db.expunge(row)  # streaming: the identity map must not keep every row
            problem = _check(row, previous, anchors)
            if problem is not None:
                return ChainReport(rows=count, bad_id=row.id, reason=problem)
            previous = (row.id, row.hash)
            count += 1
        if progress is not None:
            progress(len(rows))
        if len(rows) < batch_size:
            break
    head_id, head_hash = previous if previous is not None else (None, None)
    return ChainReport(rows=count, head_id=head_id, head_hash=head_hash)


def _check(
    row: AuditEventRow, previous: tuple[int, str] | None, anchors: dict[str, int]
) -> str | None:
    if row_hash(row) != row.hash:
        return "hash mismatch: the row was edited"
    if previous is None:
        if row.prev_hash == GENESIS:
            return None
        through = anchors.get(row.prev_hash)
        if through is not None and through < row.id:
            return None
        return (
            "prev_hash matches neither the genesis nor a checkpoint anchor: "
            "older rows were deleted without a checkpoint"
        )
    if row.prev_hash != previous[1]:
        if row.id != previous[0] + 1:
            return (
                f"prev_hash does not match row {previous[0]}: "
                f"rows {previous[0] + 1}..{row.id - 1} are missing (deleted)"
            )
        return f"prev_hash does not match row {previous[0]}: a row was deleted or inserted"
    return None
