"""Account locks remember their kind: automatic (throttling) or administrative.

A password reset may lift only the automatic lock (issue 12, finding 2). Existing locks
are classified by their end: the automatic lock lasts at most a day, an administrator's
lock 100 years, so anything ending more than two days from now is administrative.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE on both databases (SQLite >= 3.35 drops columns natively): a batch
    # table copy on SQLite would lose the expression index of 0005 (lower(name)).
    op.add_column("users", sa.Column("lock_kind", sa.String(length=16), nullable=True))
    users = sa.table(
        "users",
        sa.column("locked_until", sa.DateTime(timezone=True)),
        sa.column("lock_kind", sa.String(length=16)),
    )
    horizon = datetime.now(UTC) + timedelta(days=2)
    if op.get_bind().dialect.name == "sqlite":
        horizon = horizon.replace(tzinfo=None)  # SQLite compares the stored naive UTC text
    op.execute(
        users.update()
        .where(users.c.locked_until.is_not(None))
        .values(
            lock_kind=sa.case((users.c.locked_until > horizon, "administrative"), else_="automatic")
        )
    )


def downgrade() -> None:
    op.drop_column("users", "lock_kind")
