"""Audit hash chain: prev_hash and hash on every audit row, existing rows chained.

Existing rows are chained in id order, batch by batch, with the same canonical encoding
the application uses (keyturn.db.audit, "keyturn-audit-v1"); then both columns become
NOT NULL. Retention checkpoints are ordinary rows of type "audit.checkpoint".

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from keyturn.db.audit_chain import GENESIS, chain_hash
from keyturn.db.types import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BATCH = 1000

audit_events = sa.table(
    "audit_events",
    sa.column("id", sa.BigInteger()),
    sa.column("occurred_at", UTCDateTime()),
    sa.column("type", sa.String()),
    sa.column("user_id", sa.Uuid()),
    sa.column("session_id", sa.Uuid()),
    sa.column("ip", sa.String()),
    sa.column("data", sa.JSON()),
    sa.column("prev_hash", sa.String()),
    sa.column("hash", sa.String()),
)


def _backfill() -> None:
    bind = op.get_bind()
    table = audit_events.c
    update = (
        sa.update(audit_events)
        .where(table.id == sa.bindparam("row_id"))
        .values(prev_hash=sa.bindparam("row_prev"), hash=sa.bindparam("row_hash"))
    )
    last_id, prev_hash = None, GENESIS
    while True:
        query = sa.select(audit_events).order_by(table.id).limit(BATCH)
        if last_id is not None:
            query = query.where(table.id > last_id)
        rows = bind.execute(query).mappings().all()
        if not rows:
            return
        changes = []
        for row in rows:
            digest = chain_hash(
                id=row["id"],
                occurred_at=row["occurred_at"],
                type=row["type"],
                user_id=row["user_id"],
                session_id=row["session_id"],
                ip=row["ip"],
                data=row["data"] or {},
                prev_hash=prev_hash,
            )
            changes.append({"row_id": row["id"], "row_prev": prev_hash, "row_hash": digest})
            prev_hash = digest
        bind.execute(update, changes)
        last_id = rows[-1]["id"]


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("hash", sa.String(length=64), nullable=True))
    _backfill()
    with op.batch_alter_table("audit_events") as batch:
        batch.alter_column("prev_hash", existing_type=sa.String(length=64), nullable=False)
        batch.alter_column("hash", existing_type=sa.String(length=64), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("hash")
        batch.drop_column("prev_hash")
