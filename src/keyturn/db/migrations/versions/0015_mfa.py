"""Second factors: TOTP seeds, recovery codes and WebAuthn credentials (issue 15).

- ``mfa_totp``: one TOTP factor per user; the seed is AES-256-GCM sealed under the key
  ring (never stored in clear); ``confirmed_at`` NULL while the enrolment waits for its
  first code; ``last_used_step`` is the RFC 6238 time step of the last accepted code, so a
  replay inside the window fails (an UPDATE that only moves it forward).
- ``mfa_recovery_codes``: keyed digests only; ``used_at`` set once, atomically.
- ``passkeys``: WebAuthn credentials (public keys, never secrets) with their signature
  counter; ``credential_id`` is unique across users.
- ``one_time_tokens.attempts``: wrong codes spent on an MFA challenge (at most 5).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def _ts(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _owner(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["user_id"], ["users.id"], name=op.f(f"fk_{table}_user_id_users"), ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "mfa_totp",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("sealed_secret", sa.LargeBinary(), nullable=False),
        _ts("created_at"),
        _ts("confirmed_at", nullable=True),
        sa.Column("last_used_step", sa.BigInteger(), nullable=True),
        _owner("mfa_totp"),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_mfa_totp")),
    )
    op.create_table(
        "mfa_recovery_codes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        _ts("created_at"),
        _ts("used_at", nullable=True),
        _owner("mfa_recovery_codes"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mfa_recovery_codes")),
        sa.UniqueConstraint("digest", name=op.f("uq_mfa_recovery_codes_digest")),
    )
    op.create_index(op.f("ix_mfa_recovery_codes_user_id"), "mfa_recovery_codes", ["user_id"])
    op.create_table(
        "passkeys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("credential_id", sa.LargeBinary(), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("sign_count", sa.BigInteger(), nullable=False),
        sa.Column("transports", sa.JSON(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("aaguid", sa.String(length=36), nullable=False),
        sa.Column("backup_eligible", sa.Boolean(), nullable=False),
        sa.Column("backed_up", sa.Boolean(), nullable=False),
        _ts("created_at"),
        _ts("last_used_at", nullable=True),
        _owner("passkeys"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_passkeys")),
        sa.UniqueConstraint("credential_id", name=op.f("uq_passkeys_credential_id")),
    )
    op.create_index(op.f("ix_passkeys_user_id"), "passkeys", ["user_id"])
    with op.batch_alter_table("one_time_tokens") as batch:
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("one_time_tokens") as batch:
        batch.drop_column("attempts")
    op.drop_index(op.f("ix_passkeys_user_id"), table_name="passkeys")
    op.drop_table("passkeys")
    op.drop_index(op.f("ix_mfa_recovery_codes_user_id"), table_name="mfa_recovery_codes")
    op.drop_table("mfa_recovery_codes")
    op.drop_table("mfa_totp")
