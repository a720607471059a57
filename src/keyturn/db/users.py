"""The user repository: one query per lookup, roles joined in. Flushes, never commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, bindparam, delete, func, or_, select, union, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from keyturn.db.mfa import mfa_counts, mfa_status
from keyturn.db.models import RoleRow, UserRoleRow, UserRow
from keyturn.db.types import affected
from keyturn.db.user_changes import UserChanges
from keyturn.domain import LOCK_ADMINISTRATIVE, LOCK_AUTOMATIC, User
from keyturn.domain_mfa import MfaStatus


def _not_admin_locked() -> Any:
    return or_(UserRow.lock_kind.is_(None), UserRow.lock_kind != LOCK_ADMINISTRATIVE)


def _like_prefix(text: str) -> str:
    """A LIKE pattern matching ``text`` literally at the start (``\\`` is the escape)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def user_from_row(row: UserRow | Row[Any], roles: tuple[str, ...]) -> User:
    """The domain user from an ORM row or a Core row of the users columns."""
    return User(
        id=row.id,
        email=row.email,
        email_verified=row.email_verified,
        name=row.name,
        password_hash=row.password_hash,
        created_at=row.created_at,
        roles=roles,
        disabled=row.disabled,
        locked_until=row.locked_until,
        lock_count=row.lock_count,
        session_epoch=row.session_epoch,
        lock_kind=row.lock_kind,
    )


_USERS = UserRow.__table__
_ROLES = RoleRow.__table__
_USER_ROLES = UserRoleRow.__table__


def _user_with_roles(condition: Any, *extra: Any) -> Any:
    # One query with the roles joined in, found or not: a known address costs the same
    # round trips as an unknown one (no timing difference to enumerate with).
    # Core columns, not the mapped entity: the rows become domain users at once, so the
    # ORM's instance loading and identity map are pure cost (issue 18: about 95 us of
    # each user read, on every GET /v1/me and every login).
    return (
        select(*_USERS.columns, _ROLES.c.name.label("role_name"), *extra)
        .select_from(
            _USERS.outerjoin(_USER_ROLES, _USER_ROLES.c.user_id == _USERS.c.id).outerjoin(
                _ROLES, _ROLES.c.id == _USER_ROLES.c.role_id
            )
        )
        .where(condition)
        .order_by(_ROLES.c.name)
    )


# Built once (hot path: every GET /v1/me and every login): only the parameter changes.
_USER_BY_ID = _user_with_roles(_USERS.c.id == bindparam("user_id"))
_USER_BY_EMAIL = _user_with_roles(_USERS.c.email == bindparam("email"))
# The password check's lookup also counts the user's second factors (correlated
# subqueries on indexed columns): a login that needs no second step then reads the
# database once before its session write, not twice (issue 18).
_MFA_COUNTS = ("mfa_totp", "mfa_passkeys", "mfa_codes")
_SIGN_IN_BY_EMAIL = _user_with_roles(
    _USERS.c.email == bindparam("email"),
    *(count.label(name) for count, name in zip(mfa_counts(_USERS.c.id), _MFA_COUNTS, strict=True)),
)
# FOR SHARE OF users (PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises writers):
# held to the end of the transaction, it keeps a concurrent revoke_all (which updates the
# row first) from committing in between. OF users: the roles are on the outer join's
# nullable side, which PostgreSQL cannot lock.
_USER_BY_ID_LOCKED = _USER_BY_ID.with_for_update(read=True, of=_USERS)


def _user_and_roles(rows: Sequence[Row[Any]]) -> tuple[Row[Any], User] | None:
    """The first row of a ``_user_with_roles`` result and the user it names."""
    if not rows:
        return None
    roles = tuple(row.role_name for row in rows if row.role_name is not None)
    return rows[0], user_from_row(rows[0], roles)


async def read_for_sign_in(
    db: AsyncSession | AsyncConnection, email: str
) -> tuple[User, MfaStatus] | None:
    """A password login's lookup: the user by address, its roles and second factors."""
    found = _user_and_roles((await db.execute(_SIGN_IN_BY_EMAIL, {"email": email})).all())
    if found is None:
        return None
    row, user = found
    return user, mfa_status(*(getattr(row, name) for name in _MFA_COUNTS))


class SqlUserRepository:
    def __init__(self, db: AsyncSession, changes: UserChanges | None = None) -> None:
        self._db = db
        self._changes = changes or UserChanges()

    async def _load(self, query: Any, params: dict[str, Any]) -> User | None:
        found = _user_and_roles((await self._db.execute(query, params)).all())
        return found[1] if found is not None else None

    async def get(self, user_id: uuid.UUID, *, lock: bool = False) -> User | None:
        return await self._load(_USER_BY_ID_LOCKED if lock else _USER_BY_ID, {"user_id": user_id})

    async def get_by_email(self, email: str) -> User | None:
        return await self._load(_USER_BY_EMAIL, {"email": email})

    async def add(self, user: User) -> bool:
        values = {
            "id": user.id,
            "email": user.email,
            "email_verified": user.email_verified,
            "name": user.name,
            "password_hash": user.password_hash,
            "disabled": user.disabled,
            "created_at": user.created_at,
            "updated_at": user.created_at,
        }
        # One INSERT ... ON CONFLICT (email) DO NOTHING on both databases: a taken address
        # costs the same single statement as a free one (no failing insert, no savepoint
        # to roll back: signup must not answer faster or slower for a taken address,
        # issue 12 finding 5), and the transaction stays usable when a concurrent signup won.
        upsert = pg_insert if self._db.get_bind().dialect.name == "postgresql" else sqlite_insert
        statement = (
            upsert(UserRow).values(**values).on_conflict_do_nothing(index_elements=[UserRow.email])
        )
        return bool(affected(await self._db.execute(statement)))

    async def update_name(self, user_id: uuid.UUID, name: str | None, now: datetime) -> None:
        self._changes.mark(user_id)
        await self._db.execute(
            update(UserRow).where(UserRow.id == user_id).values(name=name, updated_at=now)
        )

    async def set_password_hash(
        self, user_id: uuid.UUID, password_hash: str | None, now: datetime
    ) -> None:
        self._changes.mark(user_id)
        await self._db.execute(
            update(UserRow)
            .where(UserRow.id == user_id)
            .values(password_hash=password_hash, updated_at=now)
        )

    async def upgrade_password_hash(
        self, user_id: uuid.UUID, current: str, upgraded: str, now: datetime
    ) -> bool:
        self._changes.mark(user_id)
        result = await self._db.execute(
            update(UserRow)
            .where(UserRow.id == user_id, UserRow.password_hash == current)
            .values(password_hash=upgraded, updated_at=now)
        )
        return bool(affected(result))

    async def mark_email_verified(self, user_id: uuid.UUID, now: datetime) -> None:
        self._changes.mark(user_id)
        await self._db.execute(
            update(UserRow).where(UserRow.id == user_id).values(email_verified=True, updated_at=now)
        )

    async def change_email(self, user_id: uuid.UUID, email: str, now: datetime) -> bool:
        self._changes.mark(user_id)
        # A savepoint: the unique index decides a race for the same new address.
        try:
            async with self._db.begin_nested():
                await self._db.execute(
                    update(UserRow)
                    .where(UserRow.id == user_id)
                    .values(email=email, email_verified=True, updated_at=now)
                )
        except IntegrityError:
            return False
        return True

    async def lock(self, user_id: uuid.UUID, *, now: datetime, until: datetime, count: int) -> bool:
        self._changes.mark(user_id)
        # Only the transition into "locked" matches, so one lock mails its owner once;
        # an administrator's lock is never replaced by the shorter automatic one.
        result = await self._db.execute(
            update(UserRow)
            .where(
                UserRow.id == user_id,
                or_(UserRow.locked_until.is_(None), UserRow.locked_until <= now),
                _not_admin_locked(),
            )
            .values(locked_until=until, lock_count=count, lock_kind=LOCK_AUTOMATIC, updated_at=now)
        )
        return bool(affected(result))

    async def admin_lock(self, user_id: uuid.UUID, *, now: datetime, until: datetime) -> None:
        self._changes.mark(user_id)
        # Replaces an automatic lock in force: its expiry must not end the admin's lock.
        await self._db.execute(
            update(UserRow)
            .where(UserRow.id == user_id)
            .values(locked_until=until, lock_kind=LOCK_ADMINISTRATIVE, updated_at=now)
        )

    async def unlock(self, user_id: uuid.UUID, now: datetime) -> None:
        self._changes.mark(user_id)
        await self._db.execute(
            update(UserRow)
            .where(UserRow.id == user_id)
            .values(locked_until=None, lock_count=0, lock_kind=None, updated_at=now)
        )

    async def unlock_automatic(self, user_id: uuid.UUID, now: datetime) -> bool:
        self._changes.mark(user_id)
        # The condition is in the UPDATE: an admin lock set since the caller read the
        # user is left alone (no read-then-write race).
        result = await self._db.execute(
            update(UserRow)
            .where(UserRow.id == user_id, _not_admin_locked())
            .values(locked_until=None, lock_count=0, lock_kind=None, updated_at=now)
        )
        return bool(affected(result))

    async def delete(self, user_id: uuid.UUID) -> None:
        self._changes.mark(user_id)
        await self._db.execute(delete(UserRow).where(UserRow.id == user_id))

    async def search(
        self, prefix: str | None, *, limit: int, after: tuple[str, uuid.UUID] | None
    ) -> list[User]:
        keyset = []
        if after is not None:
            email, user_id = after
            keyset.append(
                or_(UserRow.email > email, and_(UserRow.email == email, UserRow.id > user_id))
            )
        query = select(UserRow).order_by(UserRow.email, UserRow.id).limit(limit)
        if prefix:
            # Prefix of the stored (lower-case) email or of the name; LIKE wildcards in the
            # input are escaped so they match themselves. One branch per index, each with
            # its own limit, joined by UNION: an OR of both would let the planner walk the
            # whole email index in order, filtering, instead of two short range scans.
            pattern = _like_prefix(prefix.lower())
            branches = [
                select(UserRow.id)
                .where(condition, *keyset)
                .order_by(UserRow.email, UserRow.id)
                .limit(limit)
                .subquery()
                for condition in (
                    UserRow.email.like(pattern, escape="\\"),
                    func.lower(UserRow.name).like(pattern, escape="\\"),
                )
            ]
            matches = union(*(select(branch.c.id) for branch in branches)).subquery()
            query = query.join(matches, matches.c.id == UserRow.id)
        else:
            query = query.where(*keyset)
        rows = list(await self._db.scalars(query))
        roles = await self._roles_of([row.id for row in rows])
        return [user_from_row(row, roles.get(row.id, ())) for row in rows]

    async def _roles_of(self, user_ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[str, ...]]:
        """Roles of many users in one query (no N+1)."""
        if not user_ids:
            return {}
        rows = await self._db.execute(
            select(UserRoleRow.user_id, RoleRow.name)
            .join(RoleRow, RoleRow.id == UserRoleRow.role_id)
            .where(UserRoleRow.user_id.in_(user_ids))
            .order_by(RoleRow.name)
        )
        found: dict[uuid.UUID, list[str]] = {}
        for user_id, name in rows.all():
            found.setdefault(user_id, []).append(name)
        return {user_id: tuple(names) for user_id, names in found.items()}

    async def update_admin_fields(
        self,
        user_id: uuid.UUID,
        now: datetime,
        *,
        name: str | None,
        email_verified: bool | None,
        disabled: bool | None,
        set_name: bool,
    ) -> None:
        self._changes.mark(user_id)
        values: dict[str, Any] = {"updated_at": now}
        if set_name:
            values["name"] = name
        if email_verified is not None:
            values["email_verified"] = email_verified
        if disabled is not None:
            values["disabled"] = disabled
        await self._db.execute(update(UserRow).where(UserRow.id == user_id).values(**values))

    async def grant_role(self, user_id: uuid.UUID, role_name: str) -> None:
        self._changes.mark(user_id)
        role_id = await self._db.scalar(select(RoleRow.id).where(RoleRow.name == role_name))
        if role_id is None:
            raise LookupError(f"role {role_name!r} does not exist")
        held = await self._db.get(UserRoleRow, (user_id, role_id))
        if held is None:
            self._db.add(UserRoleRow(user_id=user_id, role_id=role_id))
            await self._db.flush()
