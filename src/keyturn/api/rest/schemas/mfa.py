"""Bodies of ``/v1/me/mfa``: second factors (issue 15)."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import BaseModel, Field, StringConstraints

from keyturn.api.rest.schemas.common import Request
from keyturn.domain_mfa import Method, MfaStatus
from keyturn.services.mfa import TotpEnrolment

# Six digits, spaces allowed ("123 456"); longer input is refused before any work on it.
TotpCode = Annotated[str, StringConstraints(min_length=1, max_length=32)]


class MfaSummaryOut(BaseModel):
    """Which factors an account has; never a secret (also the admin user's ``mfa``)."""

    totp: bool = Field(description="A confirmed authenticator app (TOTP)")
    passkeys: int = Field(description="How many passkeys are registered")
    recovery_codes_left: int = Field(description="Unused recovery codes")

    @classmethod
    def of(cls, status: MfaStatus) -> Self:
        return cls(
            totp=status.totp,
            passkeys=status.passkeys,
            recovery_codes_left=status.recovery_codes_left,
        )


class MfaStatusOut(MfaSummaryOut):
    methods: list[Method] = Field(description="How a sign-in's second step can be answered")

    @classmethod
    def of(cls, status: MfaStatus) -> Self:
        return cls(
            totp=status.totp,
            passkeys=status.passkeys,
            recovery_codes_left=status.recovery_codes_left,
            methods=list(status.methods),
        )


class TotpEnrolmentOut(BaseModel):
    secret: str = Field(description="The base32 seed, for typing into an app by hand")
    otpauth_uri: str = Field(description="The `otpauth://totp/...` URI the QR code holds")
    qr_svg: str = Field(description="The URI as an inline SVG QR code")

    @classmethod
    def of(cls, enrolment: TotpEnrolment) -> Self:
        return cls(
            secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri, qr_svg=enrolment.qr_svg
        )


class TotpConfirmRequest(Request):
    code: TotpCode = Field(description="The 6-digit code the app shows now")


class RecoveryCodesOut(BaseModel):
    recovery_codes: list[str] | None = Field(
        description="Ten single-use codes, shown only now; null when the account already "
        "had a second factor (its codes stay)"
    )


class NewRecoveryCodesOut(BaseModel):
    recovery_codes: list[str] = Field(description="Ten single-use codes, shown only now")
