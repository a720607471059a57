"""``/v1/admin/keys``: signing keys, rotation and emergency revocation [keys:write]."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from keyturn.api.http.deps import ClientDep, ServicesDep, require_permission
from keyturn.api.rest.responses import problems
from keyturn.api.rest.schemas.admin_keys import (
    RevocationOut,
    RotationOut,
    SigningKeyList,
    SigningKeyOut,
)
from keyturn.domain import Principal

router = APIRouter(prefix="/v1/admin", tags=["admin"])

KeyWriter = Annotated[Principal, Depends(require_permission("keys:write"))]


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
    return RevocationOut.of(result, state="revoked")
