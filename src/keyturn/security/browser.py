"""Browser-session cookies and CSRF tokens: HMAC-SHA256 (RFC 2104) under purpose subkeys.

Session cookie: ``<session id hex>.<HMAC(key, "session:" + id)>``. The server finds the
session by its id (a primary-key read) and proves the cookie came from it by the MAC, so
no new secret is stored anywhere, in clear or otherwise. The id alone (it is in access
tokens and session listings) is useless without the key ring.

CSRF tokens (OWASP CSRF Cheat Sheet, "signed double-submit cookie"): a random secret in
its own cookie, and in each form ``HMAC(key, "csrf:" + purpose + ":" + secret)``. A page
on another site can neither read the cookie nor compute the MAC; binding the purpose
means a token lifted from one form does not work on another.

Verification tries every ring key (newest first), so a key rotation keeps live cookies
valid for as long as the old key stays in the ring.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence

from keyturn.security.digests import constant_time_equals, keyed_digest, new_token

__all__ = [
    "csrf_token",
    "csrf_token_matches",
    "new_csrf_secret",
    "open_session_cookie",
    "seal_session_cookie",
]

_SESSION_COOKIE = re.compile(r"^([0-9a-f]{32})\.([A-Za-z0-9_-]{43})$")
_CSRF_SECRET = re.compile(r"^[A-Za-z0-9_-]{43}$")


def seal_session_cookie(key: bytes, session_id: uuid.UUID) -> str:
    """The cookie value for a session: its id and a MAC over it.

    Args:
        key: The newest ``browser-session`` subkey.
        session_id: The session.

    Returns:
        ``<32 hex>.<43 url-safe base64>``.
    """
    return f"{session_id.hex}.{keyed_digest(key, 'session:' + session_id.hex)}"


def open_session_cookie(keys: Sequence[bytes], value: str) -> uuid.UUID | None:
    """The session id a cookie names, if its MAC verifies under any ring key.

    Args:
        keys: The ``browser-session`` subkeys, newest first.
        value: The cookie as sent by the browser (anything: it is attacker-controlled).

    Returns:
        The session id, or None for a malformed or forged value.
    """
    match = _SESSION_COOKIE.match(value)
    if match is None:
        return None
    session_hex, presented = match.groups()
    # Every key is tried even after a match would be found: no early exit to time.
    valid = False
    for key in keys:
        valid |= constant_time_equals(keyed_digest(key, "session:" + session_hex), presented)
    return uuid.UUID(hex=session_hex) if valid else None


def new_csrf_secret() -> str:
    """A fresh 256-bit CSRF cookie secret (43 URL-safe characters)."""
    return new_token(32)


def csrf_token(key: bytes, secret: str, purpose: str) -> str:
    """The token a form with ``purpose`` carries for the browser holding ``secret``.

    Args:
        key: The newest ``csrf`` subkey.
        secret: The browser's CSRF cookie value.
        purpose: The form, e.g. ``"login"``.

    Returns:
        43 URL-safe characters.
    """
    return keyed_digest(key, f"csrf:{purpose}:{secret}")


def csrf_token_matches(keys: Sequence[bytes], secret: str, purpose: str, presented: str) -> bool:
    """Whether ``presented`` is the token of ``purpose`` for ``secret`` under any ring key.

    Args:
        keys: The ``csrf`` subkeys, newest first.
        secret: The CSRF cookie value (may be empty or forged).
        purpose: The form the request claims to come from.
        presented: The hidden form field (may be empty or forged).

    Returns:
        True only for a well-formed secret and a matching token (constant-time compare).
    """
    if not _CSRF_SECRET.match(secret) or not presented:
        return False
    valid = False
    for key in keys:
        valid |= constant_time_equals(csrf_token(key, secret, purpose), presented)
    return valid
