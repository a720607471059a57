"""Roles and assignment [roles:write], the audit log [audit:read], signing keys [keys:write]."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status

from keyturn.api.admin_schemas import (
    AuditEventList,
    RevocationOut,
    RoleIn,
    RoleList,
    RoleOut,
    RolePatch,
    RotationOut,
    SigningKeyList,
    SigningKeyOut,
)
from keyturn.api.deps import ClientDep, ServicesDep, require_permission
from keyturn.api.rest.responses import problems
from keyturn.domain import AuditFilter, Principal

router = APIRouter(prefix="/v1/admin", tags=["admin"])

RoleWriter = Annotated[Principal, Depends(require_permission("roles:write"))]
AuditReader = Annotated[Principal, Depends(require_permission("audit:read"))]
KeyWriter = Annotated[Principal, Depends(require_permission("keys:write"))]
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


@router.get("/audit-events", responses=problems(401, 403, 422), summary="Audit events")
async def audit_events(
    principal: AuditReader,
    services: ServicesDep,
    user_id: uuid.UUID | None = None,
    type: Annotated[str | None, Query(max_length=64)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=20)] = None,
) -> AuditEventList:
    where = AuditFilter(user_id=user_id, type=type, since=since, until=until)
    page = await services.audit_log.search(principal, where, limit=limit, cursor=cursor)
    return AuditEventList.of(page)


@router.get("/keys", responses=problems(401, 403), summary="Signing keys and their states")
async def list_keys(principal: KeyWriter, services: ServicesDep) -> SigningKeyList:
    keys = await services.admin_keys.list_keys(principal)
    return SigningKeyList(items=[SigningKeyOut.of(key) for key in keys])


@router.post(
    "/keys/rotate",
    responses=problems(401, 403, 409, 422),
    summary="Rotate: next becomes active, active retires, a new next is published",
)
async def rotate_keys(
    principal: KeyWriter,
    services: ServicesDep,
    client: ClientDep,
    force: Annotated[
        bool, Query(description="Rotate even if next is not yet long published")
    ] = False,
) -> RotationOut:
    result = await services.admin_keys.rotate(principal, force=force, client=client)
    return RotationOut.of(result)


@router.post(
    "/keys/{kid}/revoke",
    responses=problems(401, 403, 404, 409, 422),
    summary="Emergency: revoke a signing key (out of the JWKS at once, its tokens refused)",
)
async def revoke_key(
    kid: Annotated[str, Path(min_length=1, max_length=64)],
    principal: KeyWriter,
    services: ServicesDep,
    client: ClientDep,
) -> RevocationOut:
    result = await services.admin_keys.revoke(principal, kid, client=client)
    return RevocationOut.of(result)
