"""``/v1/me/api-keys``: the signed-in user's personal API keys (issue 5 item 3)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, status

from keyturn.api.http.deps import ClientDep, ServicesDep, require_scope
from keyturn.api.http.throttling import CREDENTIAL_ENDPOINT
from keyturn.api.rest.responses import no_content, problems
from keyturn.api.rest.schemas.api_keys import ApiKeyCreated, ApiKeyIn, ApiKeyList
from keyturn.api.rest.schemas.common import ApiKeyOut
from keyturn.domain import Principal

router = APIRouter(prefix="/v1/me/api-keys", tags=["me"])

KeysRead = Annotated[Principal, Depends(require_scope("me:read"))]
KeysWrite = Annotated[Principal, Depends(require_scope("me:write"))]
# Creating a key needs a password login (an access token), never another key.
KeysCreate = Annotated[Principal, Depends(require_scope("me:write", fresh=True))]


@router.get("", responses=problems(401, 403), summary="My API keys (never the keys themselves)")
async def list_api_keys(principal: KeysRead, services: ServicesDep) -> ApiKeyList:
    keys = await services.api_keys.list_mine(principal)
    return ApiKeyList(items=[ApiKeyOut.of(key) for key in keys])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    dependencies=[CREDENTIAL_ENDPOINT],
    responses=problems(400, 401, 403, 404, 422, 429, 503),
    summary="Create an API key; the answer carries `key` exactly once",
)
async def create_api_key(
    body: ApiKeyIn, principal: KeysCreate, services: ServicesDep, client: ClientDep
) -> ApiKeyCreated:
    created = await services.api_keys.create(
        principal,
        name=body.name,
        scopes=body.scopes,
        expires_at=body.expires_at,
        client=client,
    )
    return ApiKeyCreated.of(created.record, key=created.key)


@router.delete("/{key_id}", **no_content(401, 403, 404, 422), summary="Revoke one of my API keys")
async def revoke_api_key(
    key_id: uuid.UUID, principal: KeysWrite, services: ServicesDep, client: ClientDep
) -> None:
    await services.api_keys.revoke(principal, key_id, client)
