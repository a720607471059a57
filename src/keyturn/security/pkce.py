"""Proof Key for Code Exchange (RFC 7636), S256 only.

``plain`` is never accepted (RFC 9700 section 2.1.1: it gives no protection when the
authorization request leaks), so there is no method argument to get wrong.
"""

from __future__ import annotations

import base64
import hashlib
import re

from keyturn.security.digests import constant_time_equals

__all__ = ["challenge_is_valid", "s256_challenge", "verifier_is_valid", "verify"]

# RFC 7636 section 4.1: code-verifier = 43*128unreserved.
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
# RFC 7636 section 4.2: BASE64URL(SHA256(...)) of 32 bytes is exactly 43 characters.
_S256_CHALLENGE = re.compile(r"[A-Za-z0-9\-_]{43}")


def verifier_is_valid(verifier: str) -> bool:
    """Whether ``verifier`` has the RFC 7636 section 4.1 form (43..128 unreserved)."""
    return _VERIFIER.fullmatch(verifier) is not None


def challenge_is_valid(challenge: str) -> bool:
    """Whether ``challenge`` can be an S256 challenge (43 base64url characters)."""
    return _S256_CHALLENGE.fullmatch(challenge) is not None


def s256_challenge(verifier: str) -> str:
    """RFC 7636 section 4.2: BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verify(verifier: str, challenge: str) -> bool:
    """RFC 7636 section 4.6: the server recomputes the challenge and compares.

    A malformed verifier is refused before hashing; the compare is constant-time.
    """
    if not verifier_is_valid(verifier):
        return False
    return constant_time_equals(s256_challenge(verifier), challenge)
