"""Signing keys: next -> active -> retired -> expired (or revoked), changed by compare-and-set."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from keyturn.db.models import (
    SigningKeyRow,
)
from keyturn.db.types import affected
from keyturn.domain import (
    SigningKeyRecord,
)

# pg_advisory_xact_lock key serialising chain creation ("kt-keys" in ASCII); distinct from
# the audit chain's key (db/audit.py).
CHAINS_LOCK_KEY = 0x6B742D6B657973


def _signing_key(row: SigningKeyRow) -> SigningKeyRecord:
    return SigningKeyRecord(
        kid=row.kid,
        alg=row.alg,
        state=row.state,
        private_key_encrypted=row.private_key_encrypted,
        public_jwk=dict(row.public_jwk),
        created_at=row.created_at,
        activated_at=row.activated_at,
        retired_at=row.retired_at,
    )


class SqlSigningKeyRepository:
    """Signing keys; state changes are compare-and-set UPDATEs (services/keys.py)."""

    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    async def lock_chains(self) -> None:
        """Serialises key-chain creation until this transaction ends.

        There is no row to compare-and-set before a chain's first keys exist, so two
        replicas starting together on an empty table would both create a chain.
        """
        if self._db.get_bind().dialect.name == "postgresql":
            # Released at commit/rollback; READ COMMITTED gives the next statement a fresh
            # snapshot, so the keys a replica that held the lock committed are seen.
            await self._db.execute(select(func.pg_advisory_xact_lock(CHAINS_LOCK_KEY)))
        # SQLite: BEGIN IMMEDIATE (db/engine.py) already holds the database write lock.

    async def list_published(
        self, *, retired_since: datetime | None = None
    ) -> list[SigningKeyRecord]:
        published = SigningKeyRow.state.in_(("next", "active"))
        retired = SigningKeyRow.state == "retired"
        if retired_since is not None:
            retired = and_(retired, SigningKeyRow.retired_at >= retired_since)
        rows = await self._db.scalars(
            select(SigningKeyRow)
            .where(or_(published, retired))
            .order_by(SigningKeyRow.created_at.desc(), SigningKeyRow.kid)
        )
        return [_signing_key(row) for row in rows]

    async def get(self, kid: str) -> SigningKeyRecord | None:
        row = await self._db.get(SigningKeyRow, kid)
        return _signing_key(row) if row is not None else None

    async def revoke(self, kid: str, *, now: datetime) -> bool:
        # A revoked key never signs or verifies again: its private part is wiped at once,
        # and ``retired_at`` records when it was revoked.
        result = await self._db.execute(
            update(SigningKeyRow)
            .where(SigningKeyRow.kid == kid, SigningKeyRow.state != "revoked")
            .values(state="revoked", retired_at=now, private_key_encrypted=b"")
        )
        return bool(affected(result))

    async def revoked_since(self, since: datetime) -> list[tuple[str, datetime]]:
        rows = await self._db.execute(
            select(SigningKeyRow.kid, SigningKeyRow.retired_at).where(
                SigningKeyRow.state == "revoked", SigningKeyRow.retired_at >= since
            )
        )
        return [(kid, revoked_at) for kid, revoked_at in rows if revoked_at is not None]

    async def list_all(self) -> list[SigningKeyRecord]:
        rows = await self._db.scalars(
            select(SigningKeyRow).order_by(SigningKeyRow.created_at.desc(), SigningKeyRow.kid)
        )
        return [_signing_key(row) for row in rows]

    async def add(self, record: SigningKeyRecord) -> None:
        self._db.add(
            SigningKeyRow(
                kid=record.kid,
                alg=record.alg,
                state=record.state,
                private_key_encrypted=record.private_key_encrypted,
                public_jwk=dict(record.public_jwk),
                created_at=record.created_at,
                activated_at=record.activated_at,
                retired_at=record.retired_at,
            )
        )
        await self._db.flush()

    async def activate(self, kid: str, *, now: datetime) -> bool:
        # Compare-and-set: only the transaction that still sees the key as `next` wins. On
        # PostgreSQL a second UPDATE waits for the first's row lock and then matches nothing.
        result = await self._db.execute(
            update(SigningKeyRow)
            .where(SigningKeyRow.kid == kid, SigningKeyRow.state == "next")
            .values(state="active", activated_at=now)
        )
        return bool(affected(result))

    async def retire_active(self, *, alg: str, keep: str, now: datetime) -> list[str]:
        # One chain per algorithm: activating the RS256 next key must not retire ES256's.
        kids = list(
            await self._db.scalars(
                select(SigningKeyRow.kid).where(
                    SigningKeyRow.alg == alg,
                    SigningKeyRow.state == "active",
                    SigningKeyRow.kid != keep,
                )
            )
        )
        if kids:
            await self._db.execute(
                update(SigningKeyRow)
                .where(SigningKeyRow.kid.in_(kids), SigningKeyRow.state == "active")
                .values(state="retired", retired_at=now)
            )
        return kids

    async def expire_retired(self, *, retired_before: datetime) -> int:
        # The private part of a key that can no longer produce an accepted signature is
        # of no use to anyone: it is wiped.
        result = await self._db.execute(
            update(SigningKeyRow)
            .where(SigningKeyRow.state == "retired", SigningKeyRow.retired_at < retired_before)
            .values(state="expired", private_key_encrypted=b"")
        )
        return affected(result)

    async def replace_private_key(self, kid: str, *, old: bytes, new: bytes) -> bool:
        result = await self._db.execute(
            update(SigningKeyRow)
            .where(SigningKeyRow.kid == kid, SigningKeyRow.private_key_encrypted == old)
            .values(private_key_encrypted=new)
        )
        return bool(affected(result))
