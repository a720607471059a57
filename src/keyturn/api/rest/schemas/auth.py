"""Bodies of ``/v1/auth``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, EmailStr, StringConstraints

from keyturn.api.rest.schemas.common import Name, Password, Request, UserOut
from keyturn.domain import TokenPair
from keyturn.domain_mfa import MfaChallenge


class SignupRequest(Request):
    email: EmailStr
    password: Password
    name: Name | None = None


class LoginRequest(Request):
    email: EmailStr
    password: Password


class RefreshRequest(Request):
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=512)]


class SignupAccepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    verification_required: bool


class MfaRequiredResponse(BaseModel):
    """The password was right; ``POST /v1/auth/mfa/verify`` finishes the login."""

    mfa_required: Literal[True] = True
    mfa_token: str
    methods: list[Literal["totp", "recovery_code", "webauthn"]]
    expires_in: int
    # A role of KEYTURN_MFA_REQUIRED_ROLES: set up TOTP with POST /v1/auth/mfa/totp first.
    enrolment_required: bool

    @classmethod
    def of(cls, challenge: MfaChallenge) -> MfaRequiredResponse:
        return cls(
            mfa_token=challenge.mfa_token,
            methods=[method.value for method in challenge.methods],
            expires_in=challenge.expires_in,
            enrolment_required=challenge.enrolment_required,
        )


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105  (a scheme name, not a secret)
    expires_in: int
    refresh_token: str
    user: UserOut

    @classmethod
    def of(cls, pair: TokenPair) -> TokenResponse:
        return cls(
            access_token=pair.access_token,
            expires_in=pair.expires_in,
            refresh_token=pair.refresh_token,
            user=UserOut.of(pair.user),
        )
