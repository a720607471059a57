"""Indexes for revoking a consent: its grant sessions and its unused codes.

``DELETE /v1/me/consents/{id}`` ends every session and expires every code issued under the
consent; without these indexes each revocation would scan both tables.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f("ix_sessions_consent_id"), "sessions", ["consent_id"])
    op.create_index(
        op.f("ix_oauth_authorization_codes_consent_id"),
        "oauth_authorization_codes",
        ["consent_id"],
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_oauth_authorization_codes_consent_id"), table_name="oauth_authorization_codes"
    )
    op.drop_index(op.f("ix_sessions_consent_id"), table_name="sessions")
