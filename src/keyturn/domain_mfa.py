"""Second factors as services and storage both see them (issue 15).

Plain frozen dataclasses at the bottom layer, like :mod:`keyturn.domain`: a TOTP factor
(its seed only sealed), a WebAuthn credential (public parts only) and the summary a user,
an administrator and the login see.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Method(StrEnum):
    """How a second step is answered (``POST /v1/auth/mfa/verify`` ``method``)."""

    TOTP = "totp"
    RECOVERY_CODE = "recovery_code"
    WEBAUTHN = "webauthn"


@dataclass(frozen=True, slots=True)
class TotpFactor:
    user_id: uuid.UUID
    # AES-256-GCM under the key ring (DESIGN.md section 4); the clear seed is never stored.
    sealed_secret: bytes
    created_at: datetime
    # None while the enrolment waits for its first code (it expires unconfirmed).
    confirmed_at: datetime | None
    # RFC 6238 time step of the last accepted code: a code is accepted once.
    last_used_step: int | None


@dataclass(frozen=True, slots=True)
class Passkey:
    """A registered WebAuthn credential (W3C WebAuthn Level 3 section 6.1)."""

    id: uuid.UUID
    user_id: uuid.UUID
    credential_id: bytes
    # COSE public key (section 6.5.1.1); a public key, not a secret.
    public_key: bytes
    sign_count: int
    transports: tuple[str, ...]
    name: str
    aaguid: str
    # Backup eligibility / state flags (section 6.1): a synced passkey is "swk", a
    # device-bound one "hwk" in the amr (RFC 8176).
    backup_eligible: bool
    backed_up: bool
    created_at: datetime
    last_used_at: datetime | None


@dataclass(frozen=True, slots=True)
class MfaStatus:
    """What ``GET /v1/me/mfa`` shows; never a secret."""

    totp: bool
    passkeys: int
    recovery_codes_left: int

    @property
    def enabled(self) -> bool:
        """The account has a second factor (a login then needs a second step)."""
        return self.totp or self.passkeys > 0

    @property
    def methods(self) -> tuple[Method, ...]:
        """The ways this account can answer a second step, in a stable order."""
        methods: list[Method] = []
        if self.totp:
            methods.append(Method.TOTP)
        if self.passkeys:
            methods.append(Method.WEBAUTHN)
        if self.enabled and self.recovery_codes_left:
            methods.append(Method.RECOVERY_CODE)
        return tuple(methods)


@dataclass(frozen=True, slots=True)
class MfaChallenge:
    """The first step of a login succeeded; a second one must finish it.

    ``mfa_token`` is a one-time token (DESIGN.md section 4) good only for
    ``POST /v1/auth/mfa/verify`` and ``/v1/auth/mfa/webauthn/options``; with
    ``enrolment_required`` the account must first set up a factor (role policy).
    """

    mfa_token: str
    methods: tuple[Method, ...]
    expires_in: int
    enrolment_required: bool = False


# OpenID Connect Core section 2 ``acr``: "1" is one authentication factor (a password), "2"
# more than one (password and a second factor, or a passkey with user verification, which
# is possession plus a PIN or biometric); "0" (a long-lived cookie alone) is never claimed.
ONE_FACTOR_ACR = "1"
MULTI_FACTOR_ACR = "2"
ACR_VALUES = (ONE_FACTOR_ACR, MULTI_FACTOR_ACR)
# RFC 8176 section 2: the methods a sign-in used. "mfa" marks more than one factor.
AMR_PASSWORD = ("pwd",)


def acr_for(amr: tuple[str, ...]) -> str | None:
    """The ``acr`` a sign-in with these methods (RFC 8176 values) reaches."""
    if "mfa" in amr:
        return MULTI_FACTOR_ACR
    return ONE_FACTOR_ACR if amr else None


NO_FACTORS = MfaStatus(totp=False, passkeys=0, recovery_codes_left=0)
