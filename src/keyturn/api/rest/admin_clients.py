"""``/v1/admin/clients``: OAuth 2.0 client registry [clients:write].

Request and response bodies use the RFC 7591 client metadata names. A confidential
client's ``client_secret`` appears only in the answers to create and rotate; every answer
carries ``Cache-Control: no-store`` (the middleware's default).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status

from keyturn.api.http.deps import ClientDep, ServicesDep, require_permission
from keyturn.api.rest.responses import no_content, problems
from keyturn.api.rest.schemas.admin_clients import (
    ClientIn,
    ClientList,
    ClientOut,
    ClientPatchIn,
    ClientWithSecret,
    created_answer,
)
from keyturn.domain import Principal

router = APIRouter(prefix="/v1/admin/clients", tags=["admin"])

Writer = Annotated[Principal, Depends(require_permission("clients:write"))]
# Any string up to 64 characters; one that cannot be a client_id answers 404.
ClientId = Annotated[str, Path(min_length=1, max_length=64)]


@router.get("", responses=problems(401, 403, 422), summary="List OAuth clients")
async def list_clients(
    principal: Writer,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> ClientList:
    page = await services.clients.list_clients(principal, limit=limit, cursor=cursor)
    return ClientList.of(page, ClientOut.of_client)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=problems(400, 401, 403, 422, 503),
    summary="Register a client; a confidential one gets `client_secret` exactly once",
)
async def create_client(
    body: ClientIn, principal: Writer, services: ServicesDep, client: ClientDep
) -> ClientWithSecret | ClientOut:
    created = await services.clients.create(principal, body.metadata(), client)
    return created_answer(created)


@router.get("/{client_id}", responses=problems(401, 403, 404, 422), summary="One client")
async def get_client(client_id: ClientId, principal: Writer, services: ServicesDep) -> ClientOut:
    return ClientOut.of_client(await services.clients.get(principal, client_id))


@router.patch(
    "/{client_id}",
    responses=problems(400, 401, 403, 404, 422),
    summary="Change a client's metadata (fields left out stay as they are)",
)
async def update_client(
    client_id: ClientId,
    body: ClientPatchIn,
    principal: Writer,
    services: ServicesDep,
    client: ClientDep,
) -> ClientOut:
    updated = await services.clients.update(principal, client_id, body.patch(), client)
    return ClientOut.of_client(updated)


@router.delete("/{client_id}", **no_content(401, 403, 404, 422), summary="Delete a client")
async def delete_client(
    client_id: ClientId, principal: Writer, services: ServicesDep, client: ClientDep
) -> None:
    await services.clients.delete(principal, client_id, client)


@router.post(
    "/{client_id}/secret",
    responses=problems(401, 403, 404, 422),
    summary="Rotate the secret: the new one is shown once, the old one stops working at once",
)
async def rotate_secret(
    client_id: ClientId,
    principal: Writer,
    services: ServicesDep,
    client: ClientDep,
    revoke_tokens: Annotated[
        bool,
        Query(
            description="Also refuse every access token issued to the client until now "
            "(introspection and userinfo, on every replica); its grants stay and refresh "
            "with the new secret."
        ),
    ] = False,
) -> ClientWithSecret:
    rotated = await services.clients.rotate_secret(
        principal, client_id, client, revoke_tokens=revoke_tokens
    )
    return ClientWithSecret.of_client(rotated.client, client_secret=rotated.client_secret)
