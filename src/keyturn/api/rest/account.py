"""``/v1/auth/email/*`` and ``/v1/auth/password/*``: verification and password reset."""

from __future__ import annotations

from fastapi import APIRouter, status

from keyturn.api.http.deps import ClientDep, ServicesDep
from keyturn.api.http.throttling import CREDENTIAL_ENDPOINT
from keyturn.api.rest.responses import no_content, problems
from keyturn.api.rest.schemas.account import EmailRequest, ResetPasswordRequest
from keyturn.api.rest.schemas.common import Accepted, TokenRequest

router = APIRouter(prefix="/v1/auth", tags=["account"], dependencies=[CREDENTIAL_ENDPOINT])


@router.post(
    "/email/verify",
    **no_content(400, 413, 422, 429),
    summary="Confirm an email address with the token from the verification mail",
)
async def verify_email(body: TokenRequest, services: ServicesDep, client: ClientDep) -> None:
    await services.account.verify_email(body.token, client)


@router.post(
    "/email/verify/resend",
    status_code=status.HTTP_202_ACCEPTED,
    responses=problems(400, 413, 422, 429),
    summary="Send the verification mail again (always 202; limited per address)",
)
async def resend_verification(
    body: EmailRequest, services: ServicesDep, client: ClientDep
) -> Accepted:
    await services.account.resend_verification(str(body.email), client)
    return Accepted()


@router.post(
    "/password/forgot",
    status_code=status.HTTP_202_ACCEPTED,
    responses=problems(400, 413, 422, 429),
    summary="Mail a single-use reset token (always 202, same body for any address)",
)
async def forgot_password(body: EmailRequest, services: ServicesDep, client: ClientDep) -> Accepted:
    await services.account.forgot_password(str(body.email), client)
    return Accepted()


@router.post(
    "/password/reset",
    **no_content(400, 413, 422, 429, 503),
    summary="Set a new password with a reset token (ends every session)",
)
async def reset_password(
    body: ResetPasswordRequest, services: ServicesDep, client: ClientDep
) -> None:
    await services.account.reset_password(body.token, body.password, client)
