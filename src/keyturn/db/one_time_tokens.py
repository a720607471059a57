"""One-time tokens: stored as digests, used up atomically."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import JSON, case, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from keyturn.db.models import OneTimeTokenRow, UserRow
from keyturn.db.types import UTCDateTime, affected
from keyturn.domain import OneTimeToken


class SqlOneTimeTokenRepository:
    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    async def add(self, token: OneTimeToken, digest: str) -> None:
        self._db.add(
            OneTimeTokenRow(
                id=token.id,
                user_id=token.user_id,
                purpose=token.purpose,
                digest=digest,
                binding=token.binding,
                data=dict(token.data),
                created_at=token.created_at,
                expires_at=token.expires_at,
                used_at=token.used_at,
            )
        )
        await self._db.flush()

    async def find(self, digests: Sequence[str]) -> OneTimeToken | None:
        row = await self._db.scalar(
            select(OneTimeTokenRow).where(OneTimeTokenRow.digest.in_(list(digests))).limit(1)
        )
        if row is None:
            return None
        return OneTimeToken(
            id=row.id,
            user_id=row.user_id,
            purpose=row.purpose,
            binding=row.binding,
            data={str(key): str(value) for key, value in row.data.items()},
            created_at=row.created_at,
            expires_at=row.expires_at,
            used_at=row.used_at,
            attempts=row.attempts,
        )

    async def add_spent_for_email(
        self, email: str, purpose: str, digest: str, now: datetime
    ) -> None:
        # One INSERT ... SELECT keyed on the address: the same single statement as ``add``
        # without a lookup first; born used, so it can never be redeemed.
        columns = ("id", "user_id", "purpose", "digest", "binding", "data")
        await self._db.execute(
            insert(OneTimeTokenRow).from_select(
                [*columns, "created_at", "expires_at", "used_at"],
                select(
                    literal(uuid.uuid4()),
                    UserRow.id,
                    literal(purpose),
                    literal(digest),
                    literal(None),
                    literal({}, type_=JSON),
                    *(literal(now, type_=UTCDateTime()) for _ in range(3)),
                ).where(UserRow.email == email),
            )
        )

    async def consume(self, token_id: uuid.UUID, now: datetime) -> bool:
        # Single use enforced by the database: of N concurrent redemptions one matches.
        result = await self._db.execute(
            update(OneTimeTokenRow)
            .where(OneTimeTokenRow.id == token_id, OneTimeTokenRow.used_at.is_(None))
            .values(used_at=now)
        )
        return bool(affected(result))

    async def fail(self, token_id: uuid.UUID, now: datetime, *, limit: int) -> bool:
        # One UPDATE counts the wrong attempt and, at the cap, burns the token: concurrent
        # wrong guesses cannot each read "4 spent" and all get a fifth try.
        result = await self._db.execute(
            update(OneTimeTokenRow)
            .where(OneTimeTokenRow.id == token_id, OneTimeTokenRow.used_at.is_(None))
            .values(
                attempts=OneTimeTokenRow.attempts + 1,
                used_at=case((OneTimeTokenRow.attempts + 1 >= limit, now), else_=None),
            )
        )
        return bool(affected(result))

    async def invalidate(self, user_id: uuid.UUID, purpose: str, now: datetime) -> int:
        # Expired tokens are dead already: leaving them out keeps the count honest for
        # the "what was revoked" notice.
        result = await self._db.execute(
            update(OneTimeTokenRow)
            .where(
                OneTimeTokenRow.user_id == user_id,
                OneTimeTokenRow.purpose == purpose,
                OneTimeTokenRow.used_at.is_(None),
                OneTimeTokenRow.expires_at > now,
            )
            .values(used_at=now)
        )
        return affected(result)
