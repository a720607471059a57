"""Errors of the account capability: passwords, mailed one-time tokens, sessions, tokens."""

from __future__ import annotations

from keyturn.errors.base import AuthenticationFailed, InvalidInput, KeyturnError, PermissionDenied


class PasswordPolicyError(InvalidInput):
    """The new password breaks the password policy; ``code`` names the rule."""

    title = "The password does not meet the policy"

    def __init__(self, code: str, detail: str, *, field: str = "password") -> None:
        super().__init__(detail, errors=[{"field": field, "message": detail}], code=code)


class OneTimeTokenError(InvalidInput):
    """A verify / reset / email-change token was refused; ``code`` says why."""

    status = 400
    title = "The token cannot be used"


class TokenMalformed(OneTimeTokenError):
    code = "token_malformed"
    title = "The token is not well-formed"


class TokenInvalid(OneTimeTokenError):
    code = "token_invalid"
    title = "The token is unknown or no longer valid"


class TokenExpired(OneTimeTokenError):
    code = "token_expired"
    title = "The token has expired"


class TokenUsed(OneTimeTokenError):
    code = "token_used"
    title = "The token was already used"


class TokenWrongPurpose(OneTimeTokenError):
    code = "token_wrong_purpose"
    title = "The token was issued for something else"


class InvalidToken(AuthenticationFailed):
    code = "invalid_token"
    title = "The access token is missing, malformed, expired or not for this service"


class CredentialsMissing(InvalidToken):
    """No bearer token at all (RFC 6750 section 3.1: the challenge then names no error)."""

    title = "A Bearer access token is required"


class AccessTokenExpired(InvalidToken):
    """A well-signed token past its ``exp``: the client should refresh, not sign in again.

    Still an ``InvalidToken`` (RFC 6750 section 3.1 ``invalid_token`` in the challenge), so
    every caller that refuses invalid tokens refuses this one too.
    """

    code = "token_expired"
    title = "The access token has expired"


class InvalidRefreshToken(AuthenticationFailed):
    code = "invalid_refresh_token"
    title = "The refresh token is invalid, expired or revoked"


class SessionRevoked(AuthenticationFailed):
    code = "session_revoked"
    title = "The session has ended"


class EmailNotVerified(KeyturnError):
    code = "email_not_verified"
    status = 403
    title = "The email address must be verified before logging in"


class CurrentPasswordIncorrect(KeyturnError):
    """Re-authentication inside a live session failed (not a reason to drop the session)."""

    code = "invalid_current_password"
    status = 403
    title = "The current password is not correct"


class FreshLoginRequired(PermissionDenied):
    """An API key was used where only a password login may act (password, email, keys)."""

    code = "fresh_login_required"
    title = "This needs a signed-in session, not an API key"


class ReauthenticationRequired(FreshLoginRequired):
    """The session's password sign-in is too old for this change (confirming an email
    change): sign in again, then retry."""

    code = "reauthentication_required"
    title = "Sign in again: this needs a recent password sign-in"
