"""``/v1/me/consents``: the OAuth clients the signed-in user allowed, and revoking them."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from keyturn.api.http.deps import ClientDep, ServicesDep, require_scope
from keyturn.api.rest.responses import no_content, problems
from keyturn.api.rest.schemas.common import consent_out
from keyturn.api.rest.schemas.consents import ConsentList
from keyturn.domain import Principal

router = APIRouter(prefix="/v1/me/consents", tags=["me"])

ConsentsRead = Annotated[Principal, Depends(require_scope("me:read"))]
ConsentsWrite = Annotated[Principal, Depends(require_scope("me:write"))]


@router.get("", responses=problems(401, 403, 422), summary="The OAuth clients I allowed")
async def list_consents(
    principal: ConsentsRead,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> ConsentList:
    page = await services.consents.list_mine(principal, limit=limit, cursor=cursor)
    return ConsentList.of(page, consent_out)


@router.delete(
    "/{consent_id}",
    **no_content(401, 403, 404, 422),
    summary="Revoke a consent: the client's grants under it end at once",
)
async def revoke_consent(
    consent_id: uuid.UUID, principal: ConsentsWrite, services: ServicesDep, client: ClientDep
) -> None:
    await services.consents.revoke(principal, consent_id, client)
