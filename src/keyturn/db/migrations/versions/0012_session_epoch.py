"""A per-user session epoch: a session may only open under the epoch its credential saw.

``users.session_epoch`` is bumped by every "end all sessions" (password change or
reset, admin lock, disable, delete or reset, "end my other sessions"). A login checks the
password against a snapshot of the user read earlier and inserts its session later; the
insert is conditional on the epoch of that snapshot (and locks the user row on
PostgreSQL), so a login racing such an event never keeps a session (issue 12 finding 20).

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


# Plain ALTER TABLE on both databases (SQLite >= 3.35): a batch copy of ``users`` on
# SQLite would lose the expression index ``ix_users_lower_name_prefix`` of 0005.
def upgrade() -> None:
    op.add_column(
        "users", sa.Column("session_epoch", sa.Integer(), nullable=False, server_default="0")
    )


def downgrade() -> None:
    op.drop_column("users", "session_epoch")
