"""``/v1/admin/roles`` and role assignment [roles:write]."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, status

from keyturn.api.http.deps import ClientDep, ServicesDep, require_permission
from keyturn.api.rest.responses import no_content, problems
from keyturn.api.rest.schemas.admin_roles import RoleIn, RoleList, RoleOut, RolePatch
from keyturn.domain import Principal

router = APIRouter(prefix="/v1/admin", tags=["admin"])

RoleWriter = Annotated[Principal, Depends(require_permission("roles:write"))]


@router.get("/roles", responses=problems(401, 403), summary="Every role")
async def list_roles(principal: RoleWriter, services: ServicesDep) -> RoleList:
    return RoleList(items=[RoleOut.of(role) for role in await services.roles.list_roles(principal)])


@router.post(
    "/roles",
    status_code=status.HTTP_201_CREATED,
    responses=problems(400, 401, 403, 409, 422),
    summary="Create a role (only with permissions you hold)",
)
async def create_role(
    body: RoleIn, principal: RoleWriter, services: ServicesDep, client: ClientDep
) -> RoleOut:
    role = await services.roles.create(
        principal,
        name=body.name,
        description=body.description,
        permissions=body.permissions,
        client=client,
    )
    return RoleOut.of(role)


@router.get("/roles/{name}", responses=problems(401, 403, 404), summary="One role")
async def get_role(name: str, principal: RoleWriter, services: ServicesDep) -> RoleOut:
    return RoleOut.of(await services.roles.get(principal, name))


@router.patch("/roles/{name}", responses=problems(400, 401, 403, 404, 409, 422), summary="Update")
async def update_role(
    name: str, body: RolePatch, principal: RoleWriter, services: ServicesDep, client: ClientDep
) -> RoleOut:
    role = await services.roles.update(
        principal,
        name,
        description=body.description,
        permissions=body.permissions,
        client=client,
    )
    return RoleOut.of(role)


@router.delete("/roles/{name}", **no_content(401, 403, 404, 409), summary="Delete")
async def delete_role(
    name: str, principal: RoleWriter, services: ServicesDep, client: ClientDep
) -> None:
    await services.roles.delete(principal, name, client)


@router.put(
    "/users/{user_id}/roles/{name}",
    **no_content(401, 403, 404, 422),
    summary="Give a user a role",
)
async def assign_role(
    user_id: uuid.UUID, name: str, principal: RoleWriter, services: ServicesDep, client: ClientDep
) -> None:
    await services.roles.assign(principal, user_id, name, client)


@router.delete(
    "/users/{user_id}/roles/{name}",
    **no_content(401, 403, 404, 422),
    summary="Take a role from a user",
)
async def unassign_role(
    user_id: uuid.UUID, name: str, principal: RoleWriter, services: ServicesDep, client: ClientDep
) -> None:
    await services.roles.unassign(principal, user_id, name, client)
