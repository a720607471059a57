"""Second factors (issue 15): TOTP, recovery codes, WebAuthn ceremonies and step-up.

Owns enrolment and verification of every factor; the login's second step and the
passwordless sign-in finish through ``keyturn.services.accounts``.
"""

# isort: off
from keyturn.services.mfa.ports import (
    MfaStatusReader,
    PasskeyRepository,
    RecoveryCodeRepository,
    TotpRepository,
)
# isort: on

__all__ = [
    "MfaStatusReader",
    "PasskeyRepository",
    "RecoveryCodeRepository",
    "TotpRepository",
]
