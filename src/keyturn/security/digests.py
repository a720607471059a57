"""Random tokens, the secret key ring and keyed digests of bearer secrets.

Bearer secrets (refresh tokens, one-time tokens, client secrets, API keys) are stored only
as keyed digests (HMAC-SHA256, RFC 2104): a database dump alone neither reveals them nor
lets anyone test guesses offline. The key ring (``KEYTURN_SECRET_KEY``, newest first)
rotates without invalidating stored digests, because lookups try every ring key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "Digester",
    "KeyRing",
    "constant_time_equals",
    "derive_successor_token",
    "keyed_digest",
    "new_token",
]

MIN_KEY_BYTES = 32
_SUBKEY_BYTES = 32


def new_token(nbytes: int = 32) -> str:
    """Make an unguessable URL-safe token.

    Args:
        nbytes: Bytes of randomness (32 = 256 bits, the default for every bearer secret).

    Returns:
        The urlsafe-base64 token without padding.
    """
    return secrets.token_urlsafe(nbytes)


class KeyRing:
    """The secret key ring, newest key first.

    Ring keys are never used directly: ``derive`` gives one independent subkey per purpose
    (HKDF, RFC 5869), so a digest key can never double as an encryption key.

    Args:
        keys: Raw keys, newest first, each at least 32 bytes.

    Raises:
        ValueError: When the ring is empty or a key is shorter than 32 bytes.
    """

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("the key ring needs at least one key")
        for index, key in enumerate(keys):
            if len(key) < MIN_KEY_BYTES:
                raise ValueError(f"key #{index} is shorter than {MIN_KEY_BYTES} bytes")
        self._keys = tuple(bytes(key) for key in keys)
        self._key_ids = tuple(hashlib.sha256(key).digest()[:4].hex() for key in self._keys)
        self._derived: dict[str, list[bytes]] = {}

    @classmethod
    def from_strings(cls, values: Sequence[str]) -> KeyRing:
        """Build a ring from configured strings, newest first.

        Each string is used as its UTF-8 bytes and is never base64-decoded, so one value
        has exactly one meaning: a generated token (``new_token()``, ``openssl rand
        -base64 32``) and a long passphrase both work; HKDF extracts their entropy.

        Args:
            values: Key strings, each at least 32 bytes in UTF-8.

        Returns:
            The key ring.

        Raises:
            ValueError: When the ring is empty or a value is shorter than 32 bytes.
        """
        return cls([value.encode("utf-8") for value in values])

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def key_ids(self) -> list[str]:
        """Short stable ids of the ring keys (first 4 bytes of SHA-256, hex), newest first."""
        return list(self._key_ids)

    def derive(self, purpose: str) -> list[bytes]:
        """Derive one 32-byte subkey per ring key for a purpose, newest first.

        Args:
            purpose: A fixed label such as ``"refresh-token"`` (the HKDF ``info``).

        Returns:
            The subkeys, newest first (cached per purpose).
        """
        cached = self._derived.get(purpose)
        if cached is None:
            # A race between threads only computes the same value twice; no lock needed.
            cached = [_hkdf(key, purpose) for key in self._keys]
            self._derived[purpose] = cached
        return list(cached)


def _hkdf(key: bytes, purpose: str) -> bytes:
    # RFC 5869 section 3.1: a salt is optional; the ring keys are already uniform secrets.
    return HKDF(
        algorithm=hashes.SHA256(),
        length=_SUBKEY_BYTES,
        salt=None,
        info=purpose.encode("utf-8"),
    ).derive(key)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def keyed_digest(key: bytes, value: str) -> str:
    """HMAC-SHA256 of a value, urlsafe base64 without padding (43 characters).

    Args:
        key: The HMAC key.
        value: The secret to digest.

    Returns:
        The digest.
    """
    return _b64(hmac.digest(key, value.encode("utf-8"), "sha256"))


class Digester:
    """Keyed digests for one purpose, across key rotation.

    Args:
        ring: The secret key ring.
        purpose: The derivation label, e.g. ``"refresh-token"``.
    """

    def __init__(self, ring: KeyRing, purpose: str) -> None:
        self._keys = ring.derive(purpose)

    def digest(self, value: str) -> str:
        """Digest under the newest key (what gets stored).

        Args:
            value: The secret.

        Returns:
            The digest.
        """
        return keyed_digest(self._keys[0], value)

    def candidates(self, value: str) -> list[str]:
        """Digests under every ring key, newest first, for lookups that survive rotation.

        Args:
            value: The secret.

        Returns:
            One digest per ring key.
        """
        return [keyed_digest(key, value) for key in self._keys]


def constant_time_equals(a: str | bytes, b: str | bytes) -> bool:
    """Compare secrets in time independent of where they differ.

    Args:
        a: One value.
        b: The other value.

    Returns:
        True when equal.
    """
    # compare_digest refuses non-ASCII str; compare UTF-8 bytes so any input is safe.
    left = a.encode("utf-8") if isinstance(a, str) else a
    right = b.encode("utf-8") if isinstance(b, str) else b
    return hmac.compare_digest(left, right)


def derive_successor_token(key: bytes, token: str) -> str:
    """Derive the successor of a refresh token: HMAC-SHA256(key, "refresh-successor:" + token).

    Derivation is deterministic, so when the predecessor is presented again within the
    reuse grace window (a retry or a second tab, DESIGN.md section 4) the server hands out
    the very same successor without ever storing a recoverable secret: only digests are
    stored, and the successor is recomputed from the presented token. Without the key the
    successor is unpredictable, because HMAC is a PRF.

    Args:
        key: A derived subkey reserved for this purpose.
        token: The refresh token being rotated.

    Returns:
        The successor token, urlsafe base64 without padding (43 characters, 256 bits).
    """
    return keyed_digest(key, "refresh-successor:" + token)
