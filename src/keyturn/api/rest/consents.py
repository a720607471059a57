"""``/v1/me/consents``: the OAuth clients the signed-in user allowed, and revoking them."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from keyturn.api.deps import ClientDep, ServicesDep, require_scope
from keyturn.api.rest.responses import problems
from keyturn.api.schemas import ConsentList, ConsentOut
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
    return ConsentList(
        items=[ConsentOut.of(item) for item in page.items], next_cursor=page.next_cursor
    )


@router.delete(
    "/{consent_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(401, 403, 404, 422),
    summary="Revoke a consent: the client's grants under it end at once",
)
async def revoke_consent(
    consent_id: uuid.UUID, principal: ConsentsWrite, services: ServicesDep, client: ClientDep
) -> Response:
    await services.consents.revoke(principal, consent_id, client)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
