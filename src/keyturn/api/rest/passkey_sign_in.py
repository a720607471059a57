"""``/v1/auth/passkey``: passwordless sign-in with a discoverable passkey (issue 15).

``POST /options`` gives request options naming no user (the browser offers the
passkeys it holds for this relying party); ``POST`` with the assertion answers the token
pair of a login. Throttled like every credential endpoint; any failure is the same
``invalid_credentials`` (no enumeration of credentials).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from keyturn.api.http.deps import ClientDep, ServicesDep
from keyturn.api.http.throttling import CREDENTIAL_ENDPOINT
from keyturn.api.rest.responses import problems
from keyturn.api.rest.schemas.auth import TokenResponse
from keyturn.api.rest.schemas.passkeys import PasskeySignInIn
from keyturn.services.mfa import PASSWORDLESS

router = APIRouter(prefix="/v1/auth/passkey", tags=["auth"], dependencies=[CREDENTIAL_ENDPOINT])


@router.post(
    "/options",
    responses=problems(429, 503),
    summary="Request options for a passwordless sign-in (WebAuthn Level 3 JSON form)",
)
async def passkey_request_options(services: ServicesDep) -> dict[str, Any]:
    # No body to read (none, or `{}`): the passwordless sign-in names no user.
    return await services.mfa.passkeys.request_options(purpose=PASSWORDLESS, user_id=None)


@router.post(
    "",
    responses=problems(400, 401, 403, 413, 422, 429, 503),
    summary="Sign in with a passkey: the token pair of a login",
)
async def passkey_sign_in(
    body: PasskeySignInIn, services: ServicesDep, client: ClientDep
) -> TokenResponse:
    use = await services.mfa.passkeys.verify_assertion(
        body.credential.as_json(),
        purpose=PASSWORDLESS,
        user_id=None,
        binding=None,
        client=client,
    )
    # A verified user (PIN, biometrics) on a possessed key is two factors (RFC 8176).
    amr = (*use.amr, "mfa") if use.user_verified else use.amr
    pair = await services.auth.finish_sign_in(use.user_id, client, amr=amr, epoch=None)
    return TokenResponse.of(pair)
