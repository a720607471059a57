"""ID Token hash claims ``at_hash`` and ``c_hash`` (OpenID Connect Core 1.0 section 3.1.3.6
and section 3.3.2.11).

"Its value is the base64url encoding of the left-most half of the hash of the octets of
the ASCII representation of the access_token value, where the hash algorithm used is the
hash algorithm used in the alg Header Parameter of the ID Token's JOSE Header." ``c_hash``
is the same over the authorization code.

ES256 and RS256 hash with SHA-256 (RFC 7518 sections 3.3 and 3.4). OpenID Connect Core
names no hash for EdDSA; Ed25519 itself hashes with SHA-512 (RFC 8032 section 5.1), and
SHA-512 for Ed25519 is the convention of panva/oidc-token-hash, the hash component of the
OpenID Certified node oidc-provider and openid-client. Keyturn's EdDSA keys are Ed25519
only (security/keys.py), so SHA-512 it is.
"""

from __future__ import annotations

import base64
import hashlib

__all__ = ["at_hash", "c_hash", "left_half_hash"]

_HASHES = {
    "ES256": "sha256",
    "RS256": "sha256",
    "EdDSA": "sha512",  # Ed25519 only (see the module docstring)
}


def left_half_hash(value: str, alg: str) -> str:
    """The base64url (unpadded) left half of the ``alg``'s hash of ``value``'s ASCII octets.

    Args:
        value: An access token or an authorization code (ASCII).
        alg: The ``alg`` of the ID Token's JOSE header.

    Returns:
        22 characters for SHA-256, 43 for SHA-512.

    Raises:
        ValueError: An algorithm without a known hash, or a value that is not ASCII.
    """
    name = _HASHES.get(alg)
    if name is None:
        raise ValueError(f"no ID Token hash defined for {alg!r}")
    # UnicodeEncodeError is a ValueError: tokens and codes we issue are always ASCII.
    digest = hashlib.new(name, value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")


def at_hash(access_token: str, alg: str) -> str:
    """``at_hash`` of an access token for an ID Token signed with ``alg`` (section 3.1.3.6)."""
    return left_half_hash(access_token, alg)


def c_hash(code: str, alg: str) -> str:
    """``c_hash`` of an authorization code for an ID Token signed with ``alg`` (section
    3.3.2.11)."""
    return left_half_hash(code, alg)
