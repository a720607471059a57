"""``/v1/me/mfa``: the signed-in user's second factors (issue 15).

Every route takes an access token, never an API key: changing a factor needs a recent
sign-in, which a key never is. Answers carry ``Cache-Control: no-store`` (the middleware's
default for API answers): the enrolment holds the seed, the confirmation the recovery codes.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from keyturn.api.http.deps import ClientDep, ServicesDep, require_scope
from keyturn.api.http.throttling import CREDENTIAL_ENDPOINT
from keyturn.api.rest.responses import no_content, problems
from keyturn.api.rest.schemas.mfa import (
    MfaStatusOut,
    NewRecoveryCodesOut,
    RecoveryCodesOut,
    TotpConfirmRequest,
    TotpEnrolmentOut,
)
from keyturn.domain import Principal

router = APIRouter(prefix="/v1/me/mfa", tags=["me"])

MfaRead = Annotated[Principal, Depends(require_scope("me:read", fresh=True))]
MfaWrite = Annotated[Principal, Depends(require_scope("me:write", fresh=True))]


@router.get("", responses=problems(401, 403, 404), summary="My second factors")
async def get_mfa(principal: MfaRead, services: ServicesDep) -> MfaStatusOut:
    return MfaStatusOut.of(await services.mfa.factors.status(principal))


@router.post(
    "/totp",
    dependencies=[CREDENTIAL_ENDPOINT],
    responses=problems(401, 403, 404, 409, 429),
    summary="Start setting up an authenticator app (needs a recent sign-in)",
)
async def begin_totp(
    principal: MfaWrite, services: ServicesDep, client: ClientDep
) -> TotpEnrolmentOut:
    return TotpEnrolmentOut.of(await services.mfa.factors.begin_totp(principal, client))


@router.post(
    "/totp/confirm",
    dependencies=[CREDENTIAL_ENDPOINT],
    responses=problems(400, 401, 403, 404, 409, 422, 429),
    summary="Confirm the authenticator app with its current code",
)
async def confirm_totp(
    body: TotpConfirmRequest, principal: MfaWrite, services: ServicesDep, client: ClientDep
) -> RecoveryCodesOut:
    codes = await services.mfa.factors.confirm_totp(principal, body.code, client)
    return RecoveryCodesOut(recovery_codes=codes)


@router.delete(
    "/totp",
    dependencies=[CREDENTIAL_ENDPOINT],
    **no_content(401, 403, 404, 409, 429),
    summary="Remove the authenticator app (needs a recent sign-in)",
)
async def remove_totp(principal: MfaWrite, services: ServicesDep, client: ClientDep) -> None:
    await services.mfa.factors.remove_totp(principal, client)


@router.post(
    "/recovery-codes",
    dependencies=[CREDENTIAL_ENDPOINT],
    responses=problems(401, 403, 404, 409, 429),
    summary="Replace my recovery codes with a new set (needs a recent sign-in)",
)
async def regenerate_recovery_codes(
    principal: MfaWrite, services: ServicesDep, client: ClientDep
) -> NewRecoveryCodesOut:
    codes = await services.mfa.factors.regenerate_recovery_codes(principal, client)
    return NewRecoveryCodesOut(recovery_codes=codes)
