"""WebAuthn credentials (migration 0015): public keys and their signature counters."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from keyturn.db.models import PasskeyRow
from keyturn.db.types import affected
from keyturn.domain_mfa import Passkey


def _passkey(row: PasskeyRow) -> Passkey:
    return Passkey(
        id=row.id,
        user_id=row.user_id,
        credential_id=row.credential_id,
        public_key=row.public_key,
        sign_count=row.sign_count,
        transports=tuple(row.transports),
        name=row.name,
        aaguid=row.aaguid,
        backup_eligible=row.backup_eligible,
        backed_up=row.backed_up,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
    )


class SqlPasskeyRepository:
    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    async def add(self, passkey: Passkey) -> bool:
        # A savepoint: the unique credential id decides a second registration of the same
        # authenticator credential (by anyone); the transaction stays usable.
        try:
            async with self._db.begin_nested():
                self._db.add(
                    PasskeyRow(
                        id=passkey.id,
                        user_id=passkey.user_id,
                        credential_id=passkey.credential_id,
                        public_key=passkey.public_key,
                        sign_count=passkey.sign_count,
                        transports=list(passkey.transports),
                        name=passkey.name,
                        aaguid=passkey.aaguid,
                        backup_eligible=passkey.backup_eligible,
                        backed_up=passkey.backed_up,
                        created_at=passkey.created_at,
                        last_used_at=passkey.last_used_at,
                    )
                )
        except IntegrityError:
            return False
        return True

    async def list_for(self, user_id: uuid.UUID) -> list[Passkey]:
        rows = await self._db.scalars(
            select(PasskeyRow)
            .where(PasskeyRow.user_id == user_id)
            .order_by(PasskeyRow.created_at, PasskeyRow.id)
        )
        return [_passkey(row) for row in rows]

    async def get(self, passkey_id: uuid.UUID, user_id: uuid.UUID) -> Passkey | None:
        row = await self._db.scalar(
            select(PasskeyRow).where(PasskeyRow.id == passkey_id, PasskeyRow.user_id == user_id)
        )
        return None if row is None else _passkey(row)

    async def find(self, credential_id: bytes) -> Passkey | None:
        row = await self._db.scalar(
            select(PasskeyRow).where(PasskeyRow.credential_id == credential_id)
        )
        return None if row is None else _passkey(row)

    async def rename(self, passkey_id: uuid.UUID, user_id: uuid.UUID, name: str) -> bool:
        result = await self._db.execute(
            update(PasskeyRow)
            .where(PasskeyRow.id == passkey_id, PasskeyRow.user_id == user_id)
            .values(name=name)
        )
        return bool(affected(result))

    async def delete(self, passkey_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        result = await self._db.execute(
            delete(PasskeyRow).where(PasskeyRow.id == passkey_id, PasskeyRow.user_id == user_id)
        )
        return bool(affected(result))

    async def delete_all(self, user_id: uuid.UUID) -> int:
        result = await self._db.execute(delete(PasskeyRow).where(PasskeyRow.user_id == user_id))
        return affected(result)

    async def record_use(
        self, passkey_id: uuid.UUID, *, old_count: int, new_count: int, now: datetime
    ) -> bool:
        result = await self._db.execute(
            update(PasskeyRow)
            .where(PasskeyRow.id == passkey_id, PasskeyRow.sign_count == old_count)
            .values(sign_count=new_count, last_used_at=now)
        )
        return bool(affected(result))
