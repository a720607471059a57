"""OAuth clients choose their ID Token signing algorithm.

``id_token_signed_response_alg`` (OpenID Connect Registration 1.0 section 2): RS256, the
registration default, for every existing client; others may pick any algorithm of
``KEYTURN_ID_TOKEN_ALGS``.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("oauth_clients") as batch:
        batch.add_column(
            sa.Column(
                "id_token_signed_response_alg",
                sa.String(length=16),
                nullable=False,
                server_default="RS256",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("oauth_clients") as batch:
        batch.drop_column("id_token_signed_response_alg")
