"""Roles CRUD and assignment (``roles:write``); every change is audited."""

from __future__ import annotations

import re
import uuid

from keyturn.domain import ADMIN_ROLE, ClientInfo, Principal, Role, utcnow
from keyturn.errors import BuiltinRole, Conflict, InvalidInput, UnknownRole
from keyturn.services.admin.audit_log import record_action
from keyturn.services.admin.guard import guard_target
from keyturn.services.admin.permissions import Authorizer, check_known
from keyturn.services.ports import UnitOfWork, UnitOfWorkFactory

ROLE_NAME = re.compile(r"^[a-z][a-z0-9_.:-]{0,63}$")
PERMISSION = "roles:write"


def _check_name(name: str) -> str:
    if not ROLE_NAME.match(name):
        raise InvalidInput(
            "A role name is 1-64 characters: a-z first, then a-z, 0-9, '_', '.', ':', '-'.",
            errors=[{"field": "name", "message": "invalid role name"}],
        )
    return name


class RoleService:
    def __init__(self, *, uow_factory: UnitOfWorkFactory, authorizer: Authorizer) -> None:
        self._uow_factory = uow_factory
        self._authorizer = authorizer

    async def list_roles(self, principal: Principal) -> list[Role]:
        await self._authorizer.require(principal, PERMISSION)
        async with self._uow_factory() as uow:
            return await uow.roles.list()

    async def get(self, principal: Principal, name: str) -> Role:
        await self._authorizer.require(principal, PERMISSION)
        async with self._uow_factory() as uow:
            return await _role(uow, name)

    async def create(
        self,
        principal: Principal,
        *,
        name: str,
        description: str,
        permissions: list[str],
        client: ClientInfo,
    ) -> Role:
        held = await self._authorizer.require(principal, PERMISSION)
        wanted = check_known(permissions)
        self._authorizer.may_grant(held, wanted)
        now = utcnow()
        role = Role(
            id=uuid.uuid4(),
            name=_check_name(name),
            description=description,
            permissions=wanted,
            created_at=now,
        )
        async with self._uow_factory() as uow:
            if not await uow.roles.add(role):
                raise Conflict(f"A role named {name!r} exists already.")
            await _audit(uow, "role.created", principal, client, role=name)
            await uow.commit()
        return role

    async def update(
        self,
        principal: Principal,
        name: str,
        *,
        description: str | None,
        permissions: list[str] | None,
        client: ClientInfo,
    ) -> Role:
        held = await self._authorizer.require(principal, PERMISSION)
        async with self._uow_factory() as uow:
            role = await _role(uow, name)
            if role.name == ADMIN_ROLE:
                raise BuiltinRole
            wanted = role.permissions if permissions is None else check_known(permissions)
            # Adding or removing a permission both need it: no granting by proxy.
            self._authorizer.may_grant(held, tuple(set(wanted) ^ set(role.permissions)))
            await uow.roles.update(
                name,
                description=role.description if description is None else description,
                permissions=wanted,
            )
            await _audit(uow, "role.updated", principal, client, role=name)
            await uow.commit()
            return await _role(uow, name)

    async def delete(self, principal: Principal, name: str, client: ClientInfo) -> None:
        held = await self._authorizer.require(principal, PERMISSION)
        async with self._uow_factory() as uow:
            role = await _role(uow, name)
            if role.name == ADMIN_ROLE:
                raise BuiltinRole
            self._authorizer.may_grant(held, role.permissions)
            await uow.roles.delete(name)
            await _audit(uow, "role.deleted", principal, client, role=name)
            await uow.commit()

    async def assign(
        self, principal: Principal, user_id: uuid.UUID, name: str, client: ClientInfo
    ) -> None:
        await self._change_assignment(principal, user_id, name, client, grant=True)

    async def unassign(
        self, principal: Principal, user_id: uuid.UUID, name: str, client: ClientInfo
    ) -> None:
        await self._change_assignment(principal, user_id, name, client, grant=False)

    async def _change_assignment(
        self,
        principal: Principal,
        user_id: uuid.UUID,
        name: str,
        client: ClientInfo,
        *,
        grant: bool,
    ) -> None:
        held = await self._authorizer.require(principal, PERMISSION)
        async with self._uow_factory() as uow:
            role = await _role(uow, name)
            self._authorizer.may_grant(held, role.permissions)
            # Never re-role a user who holds more than the actor; never take the admin
            # role from the last active administrator.
            await guard_target(
                uow,
                held=held,
                user_id=user_id,
                now=utcnow(),
                removes_admin=not grant and role.name == ADMIN_ROLE,
            )
            if grant:
                changed = await uow.roles.assign(user_id, role.id)
            else:
                changed = await uow.roles.unassign(user_id, role.id)
            if changed:
                event = "role.assigned" if grant else "role.unassigned"
                await _audit(uow, event, principal, client, role=name, target=str(user_id))
            await uow.commit()


async def _role(uow: UnitOfWork, name: str) -> Role:
    role = await uow.roles.get(name)
    if role is None:
        raise UnknownRole(f"No role named {name!r}.")
    return role


async def _audit(
    uow: UnitOfWork, event: str, principal: Principal, client: ClientInfo, **data: str
) -> None:
    await record_action(uow, event, principal, client, data)
