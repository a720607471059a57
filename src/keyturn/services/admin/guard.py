"""Who may act on whom, and the last administrator (issue 12 finding 6).

Nobody acts on a user holding more than they do (``TargetOutranksCaller``), and no change
leaves zero active administrators (``LastAdmin``).
See docs/technical/2026-11-26_backend_security-implementation.md (V8).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from keyturn.domain import ADMIN_ROLE, User
from keyturn.errors import LastAdmin, NotFound, TargetOutranksCaller
from keyturn.services.ports import UnitOfWork

__all__ = ["guard_target", "keep_an_admin"]


async def guard_target(
    uow: UnitOfWork,
    *,
    held: frozenset[str],
    user_id: uuid.UUID,
    now: datetime,
    removes_admin: bool = False,
) -> User:
    """The target user, once the actor may act on it.

    Args:
        uow: The unit of work the change runs in (the checks and the change share it).
        held: The actor's permissions (``Authorizer.require``).
        user_id: The target.
        now: The change's instant.
        removes_admin: The change deletes, disables or locks the target, or takes its
            admin role: the last-administrator rule applies.

    Raises:
        NotFound: No such user.
        TargetOutranksCaller: The target holds a permission the actor does not.
        LastAdmin: The target is the last active administrator.
    """
    if removes_admin:
        # Before any read: the count below must see what a concurrent removal committed.
        await uow.roles.lock_role(ADMIN_ROLE)
    user = await uow.users.get(user_id)
    if user is None:
        raise NotFound("No such user.")
    beyond = sorted(await uow.roles.permissions_of(user_id) - held)
    if beyond:
        raise TargetOutranksCaller(
            f"The user holds permissions you do not: {', '.join(beyond)}.",
            errors=[{"field": "user_id", "message": f"not held: {name}"} for name in beyond],
        )
    if removes_admin:
        await keep_an_admin(uow, user_id=user_id, now=now, locked=True)
    return user


async def keep_an_admin(
    uow: UnitOfWork, *, user_id: uuid.UUID, now: datetime, locked: bool = False
) -> None:
    """Refuses to remove ``user_id`` when it holds the admin role and no other active
    holder would stay.

    Args:
        locked: The caller already holds the admin role's lock in this transaction.

    Raises:
        LastAdmin: No other active administrator.
    """
    if not locked:
        await uow.roles.lock_role(ADMIN_ROLE)
    holders = await uow.roles.holders(ADMIN_ROLE, now=now)
    if user_id in holders and not any(
        active for holder, active in holders.items() if holder != user_id
    ):
        raise LastAdmin(
            "This is the last active administrator; make another one first "
            "(keyturn users create-admin, or assign the admin role)."
        )
