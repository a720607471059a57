"""Accounts: signup, login, refresh and logout; a user's own account, sessions and access
tokens; credential rules, throttling and lockout; lifecycle mails and one-time tokens.

See docs/technical/2026-12-05_backend_architecture.md for how the packages fit together.
"""

# The names other packages use; they import them from here, never from a submodule.
# Order matters: modules that need another services package come last, so a cycle
# through it finds these names already bound; isort keeps the order.
# isort: off
from keyturn.services.accounts.ports import RateLimiter, RevocationStore, SecondFactorGate
from keyturn.services.accounts.credential_rules import new_user, parse_email
from keyturn.services.accounts.one_time_tokens import OneTimeTokens, Purpose
from keyturn.services.accounts.credential_revocation import revoke_credentials
from keyturn.services.accounts.throttle import Throttle
from keyturn.services.accounts.lifecycle_mail import AccountMail
from keyturn.services.accounts.lockout import CredentialGuard
from keyturn.services.accounts.access_tokens import (
    ACCESS_TOKEN_TYP,
    AccessTokenService,
    session_entry,
)
from keyturn.services.accounts.sessions import SessionService
from keyturn.services.accounts.authentication import AuthService
from keyturn.services.accounts.signup import SignupService
from keyturn.services.accounts.lifecycle import AccountService
from keyturn.services.accounts.profile import UserService
from keyturn.services.accounts.user_cache import UserCache
from keyturn.services.accounts.account_requests import AccountRequests
from keyturn.services.accounts.recent_sign_in import RecentSignIn
from keyturn.services.accounts.second_factor import MFA_MAX_WRONG_CODES, MFA_TOKEN_TTL, MfaGate
from keyturn.services.accounts.wiring import AccountServices
# isort: on

__all__ = [
    "ACCESS_TOKEN_TYP",
    "MFA_MAX_WRONG_CODES",
    "MFA_TOKEN_TTL",
    "AccessTokenService",
    "AccountMail",
    "AccountRequests",
    "AccountService",
    "AccountServices",
    "AuthService",
    "CredentialGuard",
    "MfaGate",
    "OneTimeTokens",
    "Purpose",
    "RateLimiter",
    "RecentSignIn",
    "RevocationStore",
    "SecondFactorGate",
    "SessionService",
    "SignupService",
    "Throttle",
    "UserCache",
    "UserService",
    "new_user",
    "parse_email",
    "revoke_credentials",
    "session_entry",
]
