"""Second factors (issue 15): TOTP, recovery codes, WebAuthn ceremonies and step-up.

Owns enrolment and verification of every factor; the login's second step and the
passwordless sign-in finish through ``keyturn.services.accounts``.
"""

# isort: off
from keyturn.services.mfa.ports import (
    CeremonyStore,
    MfaStatusReader,
    PasskeyRepository,
    RecoveryCodeRepository,
    TotpRepository,
)
from keyturn.services.mfa.recovery_codes import RecoveryCodes
from keyturn.services.mfa.totp import MfaFactors, TotpConfirmed, TotpEnrolment
from keyturn.services.mfa.webauthn_ceremony import RelyingParty
from keyturn.services.mfa.passkeys import (
    PASSWORDLESS,
    SECOND_FACTOR,
    PasskeyRegistered,
    PasskeyService,
    PasskeyUse,
)
from keyturn.services.mfa.second_step import Answer, SecondStep
from keyturn.services.mfa.wiring import MfaServices, build_mfa
# isort: on

__all__ = [
    "PASSWORDLESS",
    "SECOND_FACTOR",
    "Answer",
    "CeremonyStore",
    "MfaFactors",
    "MfaServices",
    "MfaStatusReader",
    "PasskeyRegistered",
    "PasskeyRepository",
    "PasskeyService",
    "PasskeyUse",
    "RecoveryCodeRepository",
    "RecoveryCodes",
    "RelyingParty",
    "SecondStep",
    "TotpConfirmed",
    "TotpEnrolment",
    "TotpRepository",
    "build_mfa",
]
