"""TOTP factors, recovery codes and the MFA summary (migration 0015)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from keyturn.db.models import PasskeyRow, RecoveryCodeRow, TotpFactorRow
from keyturn.db.types import affected
from keyturn.domain_mfa import MfaStatus, TotpFactor


class SqlTotpRepository:
    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    async def get(self, user_id: uuid.UUID) -> TotpFactor | None:
        row = await self._db.get(TotpFactorRow, user_id)
        if row is None:
            return None
        return TotpFactor(
            user_id=row.user_id,
            sealed_secret=row.sealed_secret,
            created_at=row.created_at,
            confirmed_at=row.confirmed_at,
            last_used_step=row.last_used_step,
        )

    async def put_pending(self, factor: TotpFactor) -> bool:
        values = {
            "user_id": factor.user_id,
            "sealed_secret": factor.sealed_secret,
            "created_at": factor.created_at,
            "confirmed_at": None,
            "last_used_step": None,
        }
        # One upsert that only overwrites an unconfirmed row: a confirmed factor is never
        # replaced by a new enrolment (it must be removed first, with a recent sign-in).
        upsert = pg_insert if self._db.get_bind().dialect.name == "postgresql" else sqlite_insert
        statement = (
            upsert(TotpFactorRow)
            .values(**values)
            .on_conflict_do_update(
                index_elements=[TotpFactorRow.user_id],
                set_={"sealed_secret": factor.sealed_secret, "created_at": factor.created_at},
                where=TotpFactorRow.confirmed_at.is_(None),
            )
        )
        return bool(affected(await self._db.execute(statement)))

    async def confirm(self, user_id: uuid.UUID, *, step: int, now: datetime) -> bool:
        result = await self._db.execute(
            update(TotpFactorRow)
            .where(TotpFactorRow.user_id == user_id, TotpFactorRow.confirmed_at.is_(None))
            .values(confirmed_at=now, last_used_step=step)
        )
        return bool(affected(result))

    async def use_step(self, user_id: uuid.UUID, step: int) -> bool:
        result = await self._db.execute(
            update(TotpFactorRow)
            .where(
                TotpFactorRow.user_id == user_id,
                TotpFactorRow.confirmed_at.is_not(None),
                or_(
                    TotpFactorRow.last_used_step.is_(None),
                    TotpFactorRow.last_used_step < step,
                ),
            )
            .values(last_used_step=step)
        )
        return bool(affected(result))

    async def delete(self, user_id: uuid.UUID) -> bool:
        result = await self._db.execute(
            delete(TotpFactorRow).where(TotpFactorRow.user_id == user_id)
        )
        return bool(affected(result))

    async def delete_pending(self, *, created_before: datetime) -> int:
        result = await self._db.execute(
            delete(TotpFactorRow).where(
                TotpFactorRow.confirmed_at.is_(None), TotpFactorRow.created_at < created_before
            )
        )
        return affected(result)

    async def sealed(self) -> list[tuple[uuid.UUID, bytes]]:
        rows = await self._db.execute(select(TotpFactorRow.user_id, TotpFactorRow.sealed_secret))
        return [(user_id, sealed) for user_id, sealed in rows]

    async def replace_sealed(self, user_id: uuid.UUID, *, old: bytes, new: bytes) -> bool:
        result = await self._db.execute(
            update(TotpFactorRow)
            .where(TotpFactorRow.user_id == user_id, TotpFactorRow.sealed_secret == old)
            .values(sealed_secret=new)
        )
        return bool(affected(result))


class SqlRecoveryCodeRepository:
    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    async def replace(self, user_id: uuid.UUID, digests: Sequence[str], now: datetime) -> None:
        await self._db.execute(delete(RecoveryCodeRow).where(RecoveryCodeRow.user_id == user_id))
        await self._db.execute(
            insert(RecoveryCodeRow),
            [
                {"id": uuid.uuid4(), "user_id": user_id, "digest": d, "created_at": now}
                for d in digests
            ],
        )

    async def use(self, user_id: uuid.UUID, digests: Sequence[str], now: datetime) -> bool:
        # The ``used_at IS NULL`` condition inside the UPDATE makes one of two racing uses
        # of the same code the winner; the other matches no row.
        result = await self._db.execute(
            update(RecoveryCodeRow)
            .where(
                RecoveryCodeRow.user_id == user_id,
                RecoveryCodeRow.digest.in_(list(digests)),
                RecoveryCodeRow.used_at.is_(None),
            )
            .values(used_at=now)
        )
        return bool(affected(result))

    async def count_left(self, user_id: uuid.UUID) -> int:
        count = await self._db.scalar(
            select(func.count())
            .select_from(RecoveryCodeRow)
            .where(RecoveryCodeRow.user_id == user_id, RecoveryCodeRow.used_at.is_(None))
        )
        return int(count or 0)

    async def delete_all(self, user_id: uuid.UUID) -> int:
        result = await self._db.execute(
            delete(RecoveryCodeRow).where(RecoveryCodeRow.user_id == user_id)
        )
        return affected(result)


def mfa_counts(user_id: Any) -> tuple[Any, Any, Any]:
    """Scalar subqueries counting a user's confirmed TOTP factor, passkeys and unused
    recovery codes; ``user_id`` is a value or a column (a correlated subquery)."""
    totp = (
        select(func.count())
        .select_from(TotpFactorRow)
        .where(TotpFactorRow.user_id == user_id, TotpFactorRow.confirmed_at.is_not(None))
        .scalar_subquery()
    )
    passkeys = (
        select(func.count())
        .select_from(PasskeyRow)
        .where(PasskeyRow.user_id == user_id)
        .scalar_subquery()
    )
    codes = (
        select(func.count())
        .select_from(RecoveryCodeRow)
        .where(RecoveryCodeRow.user_id == user_id, RecoveryCodeRow.used_at.is_(None))
        .scalar_subquery()
    )
    return totp, passkeys, codes


def mfa_status(totp: int, passkeys: int, codes: int) -> MfaStatus:
    return MfaStatus(totp=bool(totp), passkeys=int(passkeys), recovery_codes_left=int(codes))


class SqlMfaStatusReader:
    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    async def status(self, user_id: uuid.UUID) -> MfaStatus:
        # Three scalar subqueries in one SELECT: one round trip.
        row = (await self._db.execute(select(*mfa_counts(user_id)))).one()
        return mfa_status(*row)

    async def statuses(self, user_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, MfaStatus]:
        wanted = list(dict.fromkeys(user_ids))
        if not wanted:
            return {}
        # Three grouped counts, whatever the number of users (a page of the admin list).
        totp = set(
            await self._db.scalars(
                select(TotpFactorRow.user_id).where(
                    TotpFactorRow.user_id.in_(wanted), TotpFactorRow.confirmed_at.is_not(None)
                )
            )
        )
        passkey_rows = await self._db.execute(
            select(PasskeyRow.user_id, func.count())
            .where(PasskeyRow.user_id.in_(wanted))
            .group_by(PasskeyRow.user_id)
        )
        passkeys = {user_id: int(count) for user_id, count in passkey_rows}
        code_rows = await self._db.execute(
            select(RecoveryCodeRow.user_id, func.count())
            .where(RecoveryCodeRow.user_id.in_(wanted), RecoveryCodeRow.used_at.is_(None))
            .group_by(RecoveryCodeRow.user_id)
        )
        codes = {user_id: int(count) for user_id, count in code_rows}
        return {
            user_id: MfaStatus(
                totp=user_id in totp,
                passkeys=passkeys.get(user_id, 0),
                recovery_codes_left=codes.get(user_id, 0),
            )
            for user_id in wanted
        }
