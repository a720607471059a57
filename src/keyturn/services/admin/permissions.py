"""Who may do what: permissions come from the user's current roles (the database decides).

The edge checks a route's permission with ``require`` before calling a service, and the
admin services call it again themselves, so REST, GraphQL and the CLI cannot diverge.
"""

from __future__ import annotations

from keyturn.domain import PERMISSIONS, Principal
from keyturn.errors import (
    FreshLoginRequired,
    PermissionDenied,
    PermissionEscalation,
    UnknownPermission,
)
from keyturn.services.ports import UnitOfWorkFactory


def check_known(permissions: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Sorted, de-duplicated permissions, or ``UnknownPermission`` naming the strangers."""
    unknown = sorted(set(permissions) - set(PERMISSIONS))
    if unknown:
        raise UnknownPermission(
            f"Unknown permission(s): {', '.join(unknown)}.",
            errors=[{"field": "permissions", "message": f"unknown: {name}"} for name in unknown],
        )
    return tuple(sorted(set(permissions)))


def require_fresh_login(principal: Principal) -> None:
    """Refuses an API key where only a password login may act (password, email, keys)."""
    if principal.api_key_id is not None:
        raise FreshLoginRequired(
            "An API key cannot do this; sign in with your password and use the access token."
        )


class Authorizer:
    def __init__(self, *, uow_factory: UnitOfWorkFactory) -> None:
        self._uow_factory = uow_factory

    async def permissions(self, principal: Principal) -> frozenset[str]:
        """The permissions the caller holds now (a role removed a second ago is gone).

        An API key acts with the owner's current permissions that are also among its
        scopes: a key never outgrows its scopes, nor outlives a permission its owner lost.
        The host operator (``operator_principal``) holds every permission.
        """
        if principal.operator:
            return frozenset(PERMISSIONS)
        async with self._uow_factory() as uow:
            held = await uow.roles.permissions_of(principal.user_id)
        if principal.api_key_id is not None:
            return held & principal.scopes
        return held

    async def require(self, principal: Principal, permission: str) -> frozenset[str]:
        held = await self.permissions(principal)
        if permission not in held:
            raise PermissionDenied(f"This needs the {permission!r} permission.")
        return held

    @staticmethod
    def may_grant(held: frozenset[str], permissions: tuple[str, ...]) -> None:
        """Nobody hands out a permission they do not hold themselves."""
        missing = sorted(set(permissions) - held)
        if missing:
            raise PermissionEscalation(
                f"You do not hold: {', '.join(missing)}.",
                errors=[
                    {"field": "permissions", "message": f"not held: {name}"} for name in missing
                ],
            )
