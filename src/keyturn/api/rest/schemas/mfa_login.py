"""Bodies of the login's second step (``/v1/auth/mfa/*``, issue 15)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import StringConstraints, model_validator

from keyturn.api.rest.schemas.auth import TokenResponse
from keyturn.api.rest.schemas.common import OneTimeTokenValue, Request
from keyturn.api.rest.schemas.passkeys import AssertionCredentialIn
from keyturn.domain import TokenPair

# A TOTP code (6 digits) or a recovery code (24 characters, maybe with dashes and spaces).
Code = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class MfaTokenRequest(Request):
    mfa_token: OneTimeTokenValue


class MfaVerifyRequest(Request):
    mfa_token: OneTimeTokenValue
    method: Literal["totp", "recovery_code", "webauthn"]
    code: Code | None = None
    # The PublicKeyCredential JSON (AuthenticationResponseJSON) for method "webauthn".
    credential: AssertionCredentialIn | None = None

    @model_validator(mode="after")
    def _answer_fits_method(self) -> MfaVerifyRequest:
        if self.method == "webauthn":
            if self.credential is None or self.code is not None:
                raise ValueError("method webauthn takes credential (and no code)")
        elif self.code is None or self.credential is not None:
            raise ValueError(f"method {self.method} takes code (and no credential)")
        return self


class MfaVerifiedResponse(TokenResponse):
    """The token pair of a login; ``recovery_codes`` once, when this step set up TOTP."""

    recovery_codes: list[str] | None = None

    @classmethod
    def signed_in(cls, pair: TokenPair, codes: list[str] | None) -> MfaVerifiedResponse:
        return cls(**TokenResponse.of(pair).model_dump(), recovery_codes=codes)
