"""``/v1/auth/mfa``: the second step of a login (issue 15; DESIGN.md section 3).

The ``mfa_token`` arrives in the body, never as a bearer credential; these routes are
credential endpoints (per-IP ceiling) and every failure counts like a wrong password.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from keyturn.api.http.deps import ClientDep, ServicesDep
from keyturn.api.http.throttling import CREDENTIAL_ENDPOINT
from keyturn.api.rest.responses import problems
from keyturn.api.rest.schemas.mfa import TotpEnrolmentOut
from keyturn.api.rest.schemas.mfa_login import (
    MfaTokenRequest,
    MfaVerifiedResponse,
    MfaVerifyRequest,
)
from keyturn.domain_mfa import Method
from keyturn.services.mfa import Answer

router = APIRouter(prefix="/v1/auth/mfa", tags=["auth"], dependencies=[CREDENTIAL_ENDPOINT])
_API = "api"


@router.post(
    "/verify",
    responses=problems(400, 401, 403, 409, 413, 422, 429, 503),
    summary="Finish a login with a second factor: TOTP, a recovery code or a passkey",
)
async def verify(
    body: MfaVerifyRequest, services: ServicesDep, client: ClientDep
) -> MfaVerifiedResponse:
    credential = body.credential.as_json() if body.credential is not None else None
    answer = Answer(method=Method(body.method), code=body.code, credential=credential)
    pair, codes = await services.mfa.second_step.verify(body.mfa_token, answer, client)
    return MfaVerifiedResponse.signed_in(pair, codes)


@router.post(
    "/webauthn/options",
    responses=problems(400, 401, 409, 413, 422, 429, 503),
    summary="WebAuthn request options for a login's second step with a passkey",
)
async def webauthn_options(
    body: MfaTokenRequest, services: ServicesDep, client: ClientDep
) -> dict[str, Any]:
    return await services.mfa.second_step.webauthn_options(body.mfa_token, client, channel=_API)


@router.post(
    "/totp",
    responses=problems(400, 401, 409, 413, 422, 429, 503),
    summary="Set up TOTP during a login whose role demands a second factor",
)
async def begin_totp(
    body: MfaTokenRequest, services: ServicesDep, client: ClientDep
) -> TotpEnrolmentOut:
    enrolment = await services.mfa.second_step.begin_enrolment(body.mfa_token, client, channel=_API)
    return TotpEnrolmentOut.of(enrolment)
