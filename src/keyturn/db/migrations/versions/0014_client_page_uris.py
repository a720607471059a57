"""OAuth clients may register their home page, privacy policy and terms of service.

``client_uri``, ``policy_uri`` and ``tos_uri`` (RFC 7591 section 2), https URLs the
consent page links to. NULL for every existing client: nothing was registered.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_COLUMNS = ("client_uri", "policy_uri", "tos_uri")


def upgrade() -> None:
    with op.batch_alter_table("oauth_clients") as batch:
        for name in _COLUMNS:
            batch.add_column(sa.Column(name, sa.String(2000), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("oauth_clients") as batch:
        for name in reversed(_COLUMNS):
            batch.drop_column(name)
