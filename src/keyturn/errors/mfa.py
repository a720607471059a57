"""Errors of the second-factor capability: enrolment, the login's second step, passkeys."""

from __future__ import annotations

from keyturn.errors.base import AuthenticationFailed, Conflict, InvalidInput


class MfaTokenInvalid(AuthenticationFailed):
    """The ``mfa_token`` is unknown, expired, used up or burned by too many wrong codes:
    the login starts again from the password."""

    code = "mfa_token_invalid"
    title = "The sign-in step has expired; sign in again"


class MfaCodeInvalid(AuthenticationFailed):
    """A wrong TOTP code, recovery code or passkey assertion in a second step."""

    code = "mfa_code_invalid"
    title = "The code is not correct"


class FactorAlreadyEnrolled(Conflict):
    """A confirmed factor of this kind exists: remove it first (with a recent sign-in)."""

    code = "mfa_already_enrolled"
    title = "This factor is already set up"


class FactorNotEnrolled(Conflict):
    """Nothing to confirm, remove or use: no (pending) factor of this kind."""

    code = "mfa_not_enrolled"
    title = "This factor is not set up"


class WebAuthnRejected(InvalidInput):
    """A WebAuthn registration or assertion failed a check (origin, RP ID, challenge,
    signature, counter, user presence or verification); ``detail`` says which."""

    code = "webauthn_invalid"
    status = 400
    title = "The passkey response was refused"
