"""Roles (named sets of permissions) and their assignment to users."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from keyturn.db.models import RoleRow, UserRoleRow, UserRow
from keyturn.db.types import affected
from keyturn.db.user_changes import UserChanges
from keyturn.domain import Role


def _role(row: RoleRow) -> Role:
    return Role(
        id=row.id,
        name=row.name,
        description=row.description,
        permissions=tuple(sorted(row.permissions)),
        created_at=row.created_at,
    )


class SqlRoleRepository:
    def __init__(self, db: AsyncSession, changes: UserChanges | None = None) -> None:
        self._db = db
        self._changes = changes or UserChanges()

    async def list(self) -> list[Role]:
        rows = await self._db.scalars(select(RoleRow).order_by(RoleRow.name))
        return [_role(row) for row in rows]

    async def get(self, name: str) -> Role | None:
        row = await self._db.scalar(
            select(RoleRow).where(RoleRow.name == name).execution_options(populate_existing=True)
        )
        return _role(row) if row else None

    async def add(self, role: Role) -> bool:
        # A savepoint: the unique name decides a race between two creators.
        try:
            async with self._db.begin_nested():
                self._db.add(
                    RoleRow(
                        id=role.id,
                        name=role.name,
                        description=role.description,
                        permissions=list(role.permissions),
                        created_at=role.created_at,
                    )
                )
        except IntegrityError:
            return False
        return True

    async def update(self, name: str, *, description: str, permissions: tuple[str, ...]) -> None:
        self._changes.mark_every()  # everyone who holds the role
        await self._db.execute(
            update(RoleRow)
            .where(RoleRow.name == name)
            .values(description=description, permissions=list(permissions))
        )

    async def delete(self, name: str) -> None:
        self._changes.mark_every()  # everyone who held the role (their rows cascade)
        await self._db.execute(delete(RoleRow).where(RoleRow.name == name))

    async def assign(self, user_id: uuid.UUID, role_id: uuid.UUID) -> bool:
        """Grants the role; False when the user held it already."""
        self._changes.mark(user_id)
        if await self._db.get(UserRoleRow, (user_id, role_id)) is not None:
            return False
        self._db.add(UserRoleRow(user_id=user_id, role_id=role_id))
        await self._db.flush()
        return True

    async def unassign(self, user_id: uuid.UUID, role_id: uuid.UUID) -> bool:
        self._changes.mark(user_id)
        result = await self._db.execute(
            delete(UserRoleRow).where(
                UserRoleRow.user_id == user_id, UserRoleRow.role_id == role_id
            )
        )
        return bool(affected(result))

    async def permissions_of(self, user_id: uuid.UUID) -> frozenset[str]:
        """The union of the permissions of the user's current roles."""
        rows = await self._db.scalars(
            select(RoleRow.permissions)
            .join(UserRoleRow, UserRoleRow.role_id == RoleRow.id)
            .where(UserRoleRow.user_id == user_id)
        )
        return frozenset(permission for permissions in rows for permission in permissions)

    async def lock_role(self, name: str) -> None:
        """Holds the role's row until the transaction ends (PostgreSQL ``FOR UPDATE``).

        Taken first by every change that may remove a holder of the role, so two such
        changes run one after the other and the second one counts what the first left.
        SQLite needs nothing: BEGIN IMMEDIATE (db/engine.py) already serialises writers.
        """
        await self._db.execute(select(RoleRow.id).where(RoleRow.name == name).with_for_update())

    async def holders(self, name: str, *, now: datetime) -> dict[uuid.UUID, bool]:
        """Every holder of the role -> whether the account is usable (neither disabled nor
        locked at ``now``)."""
        rows = await self._db.execute(
            select(UserRow.id, UserRow.disabled, UserRow.locked_until)
            .join(UserRoleRow, UserRoleRow.user_id == UserRow.id)
            .join(RoleRow, RoleRow.id == UserRoleRow.role_id)
            .where(RoleRow.name == name)
            .execution_options(populate_existing=True)
        )
        return {
            user_id: not disabled and (locked_until is None or locked_until <= now)
            for user_id, disabled, locked_until in rows
        }
