"""Input rules for credentials: email normalisation and the password policy (ASVS 6.2)."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime

from email_validator import EmailNotValidError, validate_email

from keyturn.domain import User
from keyturn.errors import InvalidInput, PasswordPolicyError
from keyturn.security.passwords import normalize_password

# A local part shorter than this is too common to forbid inside passwords.
MIN_LOCAL_PART_FOR_CHECK = 4


@functools.cache
def common_passwords() -> frozenset[str]:
    """The 30,000 most common passwords shipped with zxcvbn (offline; NIST 800-63B 5.1.1.2)."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


def normalize_email(email: str) -> str:
    """Lower-cases the whole address so one mailbox maps to one account."""
    return email.strip().lower()


def new_user(
    email: str, *, name: str | None, password_hash: str | None, verified: bool, now: datetime
) -> User:
    """A new account (signup, the operator's admin, an administrator's invitation)."""
    return User(
        id=uuid.uuid4(),
        email=email,
        email_verified=verified,
        name=name,
        password_hash=password_hash,
        created_at=now,
    )


def parse_email(email: str) -> str:
    """Validates an address typed outside the HTTP edge (CLI), then normalises it."""
    try:
        valid = validate_email(email, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInput(
            "The email address is not valid.", errors=[{"field": "email", "message": str(exc)}]
        ) from exc
    return normalize_email(valid.normalized)


@dataclass(frozen=True, slots=True)
class PasswordPolicy:
    """Length limits and the email rule; no composition rules (NIST SP 800-63B 3.1.1.2)."""

    min_length: int = 10
    max_length: int = 1024

    def check(self, password: str, *, email: str | None = None, field: str = "password") -> str:
        """Returns the NFKC form of an acceptable new password, else raises.

        The cap is checked on the raw input first, so an oversize password never reaches
        normalisation or the hasher.
        """
        if len(password) > self.max_length:
            raise PasswordPolicyError(
                "password_too_long",
                f"The password must be at most {self.max_length} characters.",
                field=field,
            )
        normalized = normalize_password(password)
        if len(normalized) < self.min_length:
            raise PasswordPolicyError(
                "password_too_short",
                f"The password must be at least {self.min_length} characters.",
                field=field,
            )
        if normalized.lower() in common_passwords():
            raise PasswordPolicyError(
                "password_too_common",
                "This password is among the most common ones; choose another.",
                field=field,
            )
        if email:
            local = email.split("@", 1)[0].lower()
            if len(local) >= MIN_LOCAL_PART_FOR_CHECK and local in normalized.lower():
                raise PasswordPolicyError(
                    "password_contains_email",
                    "The password must not contain the email address's name part.",
                    field=field,
                )
        return normalized

    def may_match(self, password: str) -> bool:
        """Whether a login attempt could possibly match (length cap only; no hashing)."""
        return 0 < len(password) <= self.max_length
