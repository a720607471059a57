"""``/v1/admin/roles`` and role assignment [roles:write]."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from keyturn.api.http.deps import ClientDep, ServicesDep, require_permission
from keyturn.api.rest.responses import problems
from keyturn.api.rest.schemas.admin_roles import RoleIn, RoleList, RoleOut, RolePatch
from keyturn.domain import Principal

router = APIRouter(prefix="/v1/admin", tags=["admin"])

RoleWriter = Annotated[Principal, Depends(require_permission("roles:write"))]
NO_CONTENT = status.HTTP_204_NO_CONTENT


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


@router.delete(
    "/roles/{name}",
    status_code=NO_CONTENT,
    responses=problems(401, 403, 404, 409),
    summary="Delete",
)
async def delete_role(
    name: str, principal: RoleWriter, services: ServicesDep, client: ClientDep
) -> Response:
    await services.roles.delete(principal, name, client)
    return Response(status_code=NO_CONTENT)


@router.put(
    "/users/{user_id}/roles/{name}",
    status_code=NO_CONTENT,
    responses=problems(401, 403, 404, 422),
    summary="Give a user a role",
)
async def assign_role(
    user_id: uuid.UUID, name: str, principal: RoleWriter, services: ServicesDep, client: ClientDep
) -> Response:
    await services.roles.assign(principal, user_id, name, client)
    return Response(status_code=NO_CONTENT)


@router.delete(
    "/users/{user_id}/roles/{name}",
    status_code=NO_CONTENT,
    responses=problems(401, 403, 404, 422),
    summary="Take a role from a user",
)
async def unassign_role(
    user_id: uuid.UUID, name: str, principal: RoleWriter, services: ServicesDep, client: ClientDep
) -> Response:
    await services.roles.unassign(principal, user_id, name, client)
    return Response(status_code=NO_CONTENT)
