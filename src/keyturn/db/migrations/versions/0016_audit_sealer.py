"""Audit rows are inserted unchained and sealed in the background (issue 17 item 1).

- ``seq``: the row's position in the hash chain, set by the sealer (NULL until then);
  existing rows were chained in id order, so their position is their id.
- ``prev_hash`` and ``hash`` may be NULL: an unsealed row has neither.
- ``ix_audit_events_seq`` (unique) orders the chain; ``ix_audit_events_unsealed`` (partial,
  ``seq IS NULL``) is the sealer's queue, so finding the tail never scans sealed rows.
- PostgreSQL: rows used to be inserted with an explicit id (the head's plus one), so the
  id sequence never moved; it now hands out the ids and starts after the highest.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_HASH = sa.String(length=64)


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
        batch.alter_column("prev_hash", existing_type=_HASH, nullable=True)
        batch.alter_column("hash", existing_type=_HASH, nullable=True)
    op.execute("UPDATE audit_events SET seq = id")
    op.create_index(op.f("ix_audit_events_seq"), "audit_events", ["seq"], unique=True)
    op.create_index(
        "ix_audit_events_unsealed",
        "audit_events",
        ["id"],
        postgresql_where=sa.text("seq IS NULL"),
        sqlite_where=sa.text("seq IS NULL"),
    )
    if op.get_bind().dialect.name == "postgresql":
        # is_called=false on an empty table: the first id is then 1, as before.
        op.execute(
            "SELECT setval(pg_get_serial_sequence('audit_events', 'id'), "
            "COALESCE(MAX(id), 0) + 1, false) FROM audit_events"
        )


def downgrade() -> None:
    # Unsealed rows cannot satisfy the old NOT NULL chain columns: seal first
    # (`keyturn audit seal`), then downgrade.
    op.drop_index("ix_audit_events_unsealed", table_name="audit_events")
    op.drop_index(op.f("ix_audit_events_seq"), table_name="audit_events")
    with op.batch_alter_table("audit_events") as batch:
        batch.alter_column("hash", existing_type=_HASH, nullable=False)
        batch.alter_column("prev_hash", existing_type=_HASH, nullable=False)
        batch.drop_column("seq")
