"""``/v1/me/passkeys``: the signed-in user's passkeys (WebAuthn, issue 15).

Registration is two calls: ``POST /options`` gives the creation options for
``navigator.credentials.create()``, ``POST`` with its result stores the passkey. Adding
and removing need a recent sign-in (the service checks it); an API key never qualifies.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, status

from keyturn.api.http.deps import ClientDep, ServicesDep, require_scope
from keyturn.api.http.throttling import CREDENTIAL_ENDPOINT
from keyturn.api.rest.responses import no_content, problems
from keyturn.api.rest.schemas.passkeys import (
    PasskeyCreated,
    PasskeyList,
    PasskeyOut,
    PasskeyRegisterIn,
    PasskeyRenameIn,
)
from keyturn.domain import Principal

router = APIRouter(prefix="/v1/me/passkeys", tags=["me"])
# `{passkey_id:uuid}`: only a UUID selects a passkey, so `/options` with another method is a
# 405 of the options route, not a 422 of an id.

PasskeysRead = Annotated[Principal, Depends(require_scope("me:read"))]
PasskeysWrite = Annotated[Principal, Depends(require_scope("me:write"))]
# Adding a passkey needs a sign-in (an access token), never an API key.
PasskeysEnrol = Annotated[Principal, Depends(require_scope("me:write", fresh=True))]


@router.post(
    "/options",
    dependencies=[CREDENTIAL_ENDPOINT],
    responses=problems(401, 403, 429, 503),
    summary="Creation options for a new passkey (WebAuthn Level 3 JSON form)",
)
async def passkey_creation_options(
    principal: PasskeysEnrol, services: ServicesDep, client: ClientDep
) -> dict[str, Any]:
    return await services.mfa.passkeys.registration_options(principal, client)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    dependencies=[CREDENTIAL_ENDPOINT],
    responses=problems(400, 401, 403, 409, 413, 422, 429, 503),
    summary="Register a passkey; the first factor also gets recovery codes (shown once)",
)
async def register_passkey(
    body: PasskeyRegisterIn, principal: PasskeysEnrol, services: ServicesDep, client: ClientDep
) -> PasskeyCreated:
    registered = await services.mfa.passkeys.register(
        principal, body.credential.as_json(), body.name, client
    )
    return PasskeyCreated(
        passkey=PasskeyOut.of(registered.passkey), recovery_codes=registered.recovery_codes
    )


@router.get("", responses=problems(401, 403), summary="My passkeys (public parts only)")
async def list_passkeys(principal: PasskeysRead, services: ServicesDep) -> PasskeyList:
    passkeys = await services.mfa.passkeys.list(principal)
    return PasskeyList(items=[PasskeyOut.of(passkey) for passkey in passkeys])


@router.patch(
    "/{passkey_id:uuid}",
    responses=problems(400, 401, 403, 404, 413, 422),
    summary="Rename one of my passkeys",
)
async def rename_passkey(
    passkey_id: uuid.UUID, body: PasskeyRenameIn, principal: PasskeysWrite, services: ServicesDep
) -> PasskeyOut:
    return PasskeyOut.of(await services.mfa.passkeys.rename(principal, passkey_id, body.name))


@router.delete(
    "/{passkey_id:uuid}", **no_content(401, 403, 404, 422, 503), summary="Remove one of my passkeys"
)
async def remove_passkey(
    passkey_id: uuid.UUID, principal: PasskeysWrite, services: ServicesDep, client: ClientDep
) -> None:
    await services.mfa.passkeys.remove(principal, passkey_id, client)
