"""Indexes for the admin user search (prefix of email or name).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

On PostgreSQL the ``text_pattern_ops`` operator class lets ``LIKE 'prefix%'`` use the
index whatever the database collation; ``lower(name)`` matches the case-insensitive
search the repository runs.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_users_email_prefix",
        "users",
        ["email"],
        postgresql_ops={"email": "text_pattern_ops"},
    )
    op.create_index(
        "ix_users_lower_name_prefix",
        "users",
        [sa.text("lower(name)")],
        postgresql_ops={"lower(name)": "text_pattern_ops"},
    )


def downgrade() -> None:
    op.drop_index("ix_users_lower_name_prefix", table_name="users")
    op.drop_index("ix_users_email_prefix", table_name="users")
