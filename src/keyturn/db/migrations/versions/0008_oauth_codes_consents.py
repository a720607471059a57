"""OAuth 2.0 authorization codes and consents; sessions may belong to an OAuth grant.

An authorization code (RFC 6749 section 4.1.2) is 256 random bits stored only as a keyed
digest, like a refresh token; single use is an atomic ``UPDATE ... WHERE used_at IS NULL``.
A consent is what a user allowed one client (a sorted scope set). A session with a
``client_id`` is an OAuth grant: its refresh tokens rotate with the first-party rules.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _ts(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "oauth_consents",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=1000), nullable=False),
        _ts("created_at"),
        _ts("revoked_at", nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_oauth_consents_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["oauth_clients.client_id"],
            name=op.f("fk_oauth_consents_client_id_oauth_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_consents")),
    )
    op.create_index(
        op.f("ix_oauth_consents_user_id_client_id"), "oauth_consents", ["user_id", "client_id"]
    )
    # Plain columns, no foreign keys: adding a constraint to an existing SQLite table means
    # recreating it, and dropping the old table (foreign_keys=ON) would cascade-delete
    # every refresh token. A grant of a deleted client dies at the token endpoint, whose
    # client authentication fails.
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("client_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("scope", sa.String(length=1000), nullable=True))
        batch.add_column(sa.Column("consent_id", sa.Uuid(), nullable=True))
    op.create_table(
        "oauth_authorization_codes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("browser_session_id", sa.Uuid(), nullable=False),
        sa.Column("redirect_uri", sa.String(length=2000), nullable=False),
        sa.Column("scope", sa.String(length=1000), nullable=False),
        sa.Column("nonce", sa.String(length=512), nullable=True),
        sa.Column("code_challenge", sa.String(length=64), nullable=True),
        _ts("auth_time"),
        sa.Column("amr", sa.JSON(), nullable=False),
        sa.Column("acr", sa.String(length=64), nullable=True),
        sa.Column("consent_id", sa.Uuid(), nullable=True),
        _ts("created_at"),
        _ts("expires_at"),
        _ts("used_at", nullable=True),
        sa.Column("issued_session_id", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_oauth_authorization_codes_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["oauth_clients.client_id"],
            name=op.f("fk_oauth_authorization_codes_client_id_oauth_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_authorization_codes")),
        sa.UniqueConstraint("digest", name=op.f("uq_oauth_authorization_codes_digest")),
    )
    op.create_index(
        op.f("ix_oauth_authorization_codes_expires_at"),
        "oauth_authorization_codes",
        ["expires_at"],
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_oauth_authorization_codes_expires_at"), table_name="oauth_authorization_codes"
    )
    op.drop_table("oauth_authorization_codes")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("consent_id")
        batch.drop_column("scope")
        batch.drop_column("client_id")
    op.drop_index(op.f("ix_oauth_consents_user_id_client_id"), table_name="oauth_consents")
    op.drop_table("oauth_consents")
