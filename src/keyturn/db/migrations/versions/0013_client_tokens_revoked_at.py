"""OAuth clients remember when their access tokens were revoked as a whole.

``tokens_revoked_at`` (issue 12 finding 14): a secret rotation with ``revoke_tokens``
sets it, and every access token issued to the client at or before that second is
refused from then on (introspection reads it with the client). NULL for every existing
client: nothing was revoked.

``ix_sessions_client_id`` (finding 23): deleting a client ends its grant sessions; the
index is partial, so first-party and browser sessions (``client_id`` NULL) never enter it
and a login's INSERT does not maintain it.

Revision ID: 0013
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("oauth_clients") as batch:
        batch.add_column(sa.Column("tokens_revoked_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        op.f("ix_sessions_client_id"),
        "sessions",
        ["client_id"],
        postgresql_where=sa.text("client_id IS NOT NULL"),
        sqlite_where=sa.text("client_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_sessions_client_id"), table_name="sessions")
    with op.batch_alter_table("oauth_clients") as batch:
        batch.drop_column("tokens_revoked_at")
