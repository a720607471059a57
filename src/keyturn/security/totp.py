"""Time-based one-time passwords (RFC 6238) on top of pyotp's HOTP (RFC 4226).

The parameters are the ones every authenticator app understands: HMAC-SHA-1, 6 digits,
30-second steps (RFC 6238 section 4, the ``otpauth://`` defaults). A seed is 160 random
bits, the HMAC-SHA-1 block output length RFC 4226 section 4 (R6) recommends.

Pure: the caller passes the time; nothing here reads settings, storage or the clock.
"""

from __future__ import annotations

import io
import re
from datetime import datetime

import pyotp
import segno

from keyturn.security.digests import constant_time_equals

__all__ = ["DIGITS", "STEP_SECONDS", "matching_step", "new_secret", "provisioning_uri", "qr_svg"]

DIGITS = 6
STEP_SECONDS = 30
_SECRET_BYTES = 20  # 160 bits (RFC 4226 section 4, R6)
_CODE = re.compile(rf"[0-9]{{{DIGITS}}}")
_SPACES = re.compile(r"[ \t]+")
# Longer input is refused before any regex work on it.
_MAX_INPUT = 32


def new_secret() -> str:
    """A new seed: 160 random bits as unpadded RFC 4648 base32 (32 characters)."""
    return pyotp.random_base32(length=_SECRET_BYTES * 8 // 5)


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)


def provisioning_uri(secret: str, account: str, issuer: str) -> str:
    """The ``otpauth://totp/...`` URI an authenticator app scans (Key Uri Format).

    Args:
        secret: The base32 seed.
        account: What the app shows under the issuer (the user's email).
        issuer: The service's name (both as the label prefix and the ``issuer`` parameter).
    """
    return _totp(secret).provisioning_uri(name=account, issuer_name=issuer)


def step_at(now: datetime) -> int:
    """RFC 6238 section 4.2: T = floor((unix time - T0) / X) with T0 = 0, X = 30."""
    return int(now.timestamp()) // STEP_SECONDS


def normal_code(code: str) -> str | None:
    """The 6 ASCII digits of ``code`` once spaces are removed, or None (malformed)."""
    if len(code) > _MAX_INPUT:
        return None
    compact = _SPACES.sub("", code)
    # ``re`` [0-9] is ASCII only, unlike ``str.isdigit`` (which takes "٣" or "³").
    return compact if _CODE.fullmatch(compact) else None


def matching_step(secret: str, code: str, now: datetime, *, drift: int = 1) -> int | None:
    """The time step whose code ``code`` is, within ``now`` ± ``drift`` steps.

    RFC 6238 section 5.2 lets a verifier accept codes from adjacent steps to absorb clock
    skew and typing delay; one step each way is the recommended window. Every candidate
    is compared, in constant time, whatever matches first: the time taken says nothing
    about which step (if any) matched.

    Args:
        secret: The base32 seed.
        code: What the user typed (spaces are ignored).
        now: The verifier's time (timezone-aware).
        drift: How many steps before and after ``now`` are accepted.

    Returns:
        The largest matching step (the caller stores it so the code is never accepted
        again), or None for a wrong or malformed code.
    """
    normal = normal_code(code)
    if normal is None:
        return None
    totp = _totp(secret)
    current = step_at(now)
    found: int | None = None
    for step in range(current - drift, current + drift + 1):
        if step < 0:
            continue
        if constant_time_equals(totp.generate_otp(step), normal):
            found = step
    return found


def code_at(secret: str, step: int) -> str:
    """The code of ``step`` (tests and tools; the verifier uses ``matching_step``)."""
    return _totp(secret).generate_otp(step)


def qr_svg(uri: str) -> str:
    """The URI as a QR code: an inline ``<svg>`` element (no XML declaration, no external
    reference), safe to put straight into a page or a JSON answer."""
    qr = segno.make(uri, error="m", micro=False)
    buffer = io.BytesIO()
    # The xmlns attribute keeps the string a valid standalone SVG document too.
    qr.save(buffer, kind="svg", xmldecl=False, svgns=True, nl=False, scale=4)
    return buffer.getvalue().decode("ascii")
