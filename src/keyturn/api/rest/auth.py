"""``/v1/auth``: signup, login, refresh, logout (DESIGN.md section 3)."""

from __future__ import annotations

from fastapi import APIRouter, status

from keyturn.api.http.deps import ClientDep, PrincipalDep, ServicesDep
from keyturn.api.http.throttling import CREDENTIAL_ENDPOINT
from keyturn.api.rest.responses import no_content, problems
from keyturn.api.rest.schemas.auth import (
    LoginRequest,
    MfaRequiredResponse,
    RefreshRequest,
    SignupAccepted,
    SignupRequest,
    TokenResponse,
)
from keyturn.domain_mfa import MfaChallenge

router = APIRouter(prefix="/v1/auth", tags=["auth"], dependencies=[CREDENTIAL_ENDPOINT])


@router.post(
    "/signup",
    status_code=status.HTTP_202_ACCEPTED,
    responses=problems(400, 413, 422, 429, 503),
    summary="Create an account (always 202: no account enumeration)",
)
async def signup(body: SignupRequest, services: ServicesDep, client: ClientDep) -> SignupAccepted:
    await services.signup.signup(str(body.email), body.password, body.name, client)
    return SignupAccepted(verification_required=services.email_verification_required)


@router.post(
    "/login",
    responses=problems(400, 401, 403, 413, 422, 429, 503),
    summary="Exchange email and password for a token pair, or a second step (MFA)",
)
async def login(
    body: LoginRequest, services: ServicesDep, client: ClientDep
) -> TokenResponse | MfaRequiredResponse:
    signed_in = await services.auth.login(str(body.email), body.password, client)
    if isinstance(signed_in, MfaChallenge):
        return MfaRequiredResponse.of(signed_in)
    return TokenResponse.of(signed_in)


@router.post(
    "/refresh",
    responses=problems(400, 401, 413, 422, 429),
    summary="Rotate a refresh token (one successor; reuse ends the session)",
)
async def refresh(body: RefreshRequest, services: ServicesDep, client: ClientDep) -> TokenResponse:
    pair = await services.auth.refresh(body.refresh_token, client)
    return TokenResponse.of(pair)


@router.post(
    "/logout",
    **no_content(401, 403, 429),
    summary="End the current session on every replica at once (not with an API key)",
)
async def logout(principal: PrincipalDep, services: ServicesDep, client: ClientDep) -> None:
    await services.auth.logout(principal, client)
