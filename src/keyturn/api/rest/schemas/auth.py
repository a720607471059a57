"""Bodies of ``/v1/auth``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, EmailStr, StringConstraints

from keyturn.api.rest.schemas.common import Name, Password, Request, UserOut
from keyturn.domain import TokenPair


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
